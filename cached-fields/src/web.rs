//! The web dashboard (feature `web`): an axum [`Router`](axum::Router) an
//! application can mount under its own path, or `serve --listen ADDR` in
//! the command line. Every request needs the token (`Authorization:
//! Bearer T`, or the cookie a visit to `/?token=T` sets), except
//! `/metrics` when told it is public; actions are `POST`s carrying the
//! CSRF token of the page they came from; everything read from the
//! database is escaped.
//!
//! Pages read only what indexes serve (flagged rows through the partial
//! index on each flag, a row by its primary key, the workers' small
//! per-minute table for the chart), except the per-field row count of the
//! overview, which `status` also draws (one count per field per refresh).
//!
//! ```no_run
//! # async fn f(db: cached_fields::Db, registry: cached_fields::Registry) -> std::io::Result<()> {
//! let app = cached_fields::web::router(db, registry, "s3cret".to_owned(), false);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;

use crate::db::{Ctx, Db};
use crate::key::Key;
use crate::registry::Registry;
use crate::statements::FieldSql;
use crate::value::{SqlType, Value};

/// What every handler shares.
struct Shared {
    /// Where the router is mounted (`""` at the root, else `/path`).
    prefix: String,
    db: Db,
    registry: Registry,
    token: String,
    csrf: String,
    public_metrics: bool,
}

type AppState = Arc<Shared>;

/// The dashboard for `registry`'s fields on `db`, guarded by `token`;
/// `public_metrics` serves `/metrics` without it. For the root of a site;
/// [`router_at`] for one mounted under a path.
pub fn router(db: Db, registry: Registry, token: String, public_metrics: bool) -> axum::Router {
    router_at("", db, registry, token, public_metrics)
}

/// [`router`] for mounting with `Router::nest(prefix, …)`: its links and
/// redirects stay under `prefix` (e.g. `/admin/cache`).
pub fn router_at(
    prefix: &str,
    db: Db,
    registry: Registry,
    token: String,
    public_metrics: bool,
) -> axum::Router {
    let csrf = unguessable();
    crate::metrics::enable();
    let state = Arc::new(Shared {
        prefix: prefix.trim_end_matches('/').to_owned(),
        db,
        registry,
        token,
        csrf,
        public_metrics,
    });
    axum::Router::new()
        .route("/", get(overview))
        .route("/metrics", get(metrics))
        .route("/field/{table}/{field}", get(field_page))
        .route("/field/{table}/{field}/row", get(row_page))
        .route("/field/{table}/{field}/{action}", post(action))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// 128 bits from the standard library's randomly keyed hasher (its keys
/// come from the operating system's random source), as hex.
fn unguessable() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_i64(Utc::now().timestamp_nanos_opt().unwrap_or_default());
        h.finish()
    };
    format!("{:016x}{:016x}", part(1), part(2))
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A cookie's value from the request's headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Lets a request through with the token; `/?token=T` sets the cookie and
/// redirects to `/` (so the token leaves the address bar).
async fn auth(
    State(s): State<AppState>,
    Query(q): Query<TokenQuery>,
    req: Request,
    next: Next,
) -> Response {
    if s.public_metrics && req.uri().path() == "/metrics" {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(t) = q.token
        && same(&t, &s.token)
    {
        let mut r = Redirect::to(&format!("{}{}", s.prefix, req.uri().path())).into_response();
        if let Ok(v) = format!(
            "cf_token={}; HttpOnly; SameSite=Strict; Path={}/",
            s.token, s.prefix
        )
        .parse()
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    let ok = bearer.is_some_and(|t| same(t, &s.token))
        || cookie(headers, "cf_token").is_some_and(|t| same(t, &s.token));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is needed: Authorization: Bearer TOKEN, or open /?token=TOKEN once\n",
        )
            .into_response();
    }
    next.run(req).await
}

fn page(prefix: &str, title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base href=\"{b}/\">\
         <title>{t} · cached-fields</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         .bad{{color:#a00}}form{{display:inline}}</style></head><body>\
         <h1>{t}</h1>{body}<p><a href=\"./\">overview</a></p></body></html>",
        t = esc(title),
        b = esc(prefix)
    ))
}

fn failure(e: &impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "",
            "error",
            &format!("<p class=\"bad\">{}</p>", esc(&e.to_string())),
        ),
    )
        .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    match crate::metrics::render(&s.db, &s.registry).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => failure(&e),
    }
}

/// An SVG bar chart of 60 counts.
fn chart(counts: &[i64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut bars = String::new();
    for (i, n) in counts.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)] // counts per minute
        let h = (*n as f64 / max as f64 * 100.0).round();
        let _ = write!(
            bars,
            "<rect x=\"{x}\" y=\"{y}\" width=\"8\" height=\"{h}\" fill=\"#47a\"><title>{n}</title></rect>",
            x = i * 10,
            y = 100.0 - h
        );
    }
    format!(
        "<svg id=\"chart\" width=\"600\" height=\"110\" role=\"img\" \
         aria-label=\"recalculations per minute, last hour\">{bars}</svg>\
         <p>recalculations per minute over the last hour, as the workers recorded them \
         (at most {max} a minute)</p>"
    )
}

async fn overview(State(s): State<AppState>) -> Response {
    let (fields, workers, minutes) = match (
        s.registry.status(&s.db).await,
        s.registry.workers(&s.db).await,
        crate::heartbeats::per_minute(&s.db).await,
    ) {
        (Ok(f), Ok(w), Ok(m)) => (f, w, m),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(&e),
    };
    let mut body = String::from(
        "<table id=\"fields\"><tr><th>field</th><th>rows</th><th>stale</th><th>failing</th>\
         <th>oldest stale</th><th>state</th></tr>",
    );
    for f in &fields {
        let _ = write!(
            body,
            "<tr><td><a href=\"field/{t}/{n}\">{t}.{n}</a></td><td>{}</td><td>{}</td>\
             <td class=\"{bad}\">{}</td><td>{}</td><td>{}</td></tr>",
            f.rows,
            f.stale,
            f.failing,
            f.oldest_stale_secs
                .map_or_else(|| "–".to_owned(), |x| format!("{x:.1} s")),
            if f.paused {
                "paused"
            } else if f.held {
                "held"
            } else {
                "running"
            },
            t = esc(&f.table),
            n = esc(&f.field),
            bad = if f.failing > 0 { "bad" } else { "" },
        );
    }
    body.push_str("</table>");
    body.push_str(&chart(&minutes));
    body.push_str("<h2>workers</h2><table id=\"workers\"><tr><th>worker</th><th>state</th><th>last heartbeat</th><th>recalculated</th><th>failed</th></tr>");
    let now = Utc::now();
    for w in &workers {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{} s ago</td><td>{}</td><td>{}</td></tr>",
            esc(&w.id),
            if w.alive { "alive" } else { "gone" },
            (now - w.heartbeat_at).num_seconds(),
            w.recalculated,
            w.failed
        );
    }
    body.push_str("</table>");
    page(&s.prefix, "cached fields", &body).into_response()
}

/// The declared field `table.field`, as its spec and field spec.
fn declared<'a>(
    s: &'a Shared,
    table: &str,
    field: &str,
) -> Option<(&'a crate::schema::TableSpec, &'a crate::schema::FieldSpec)> {
    let (entry, i) = s.registry.find(table, field).ok()?;
    Some((&entry.spec, &entry.spec.fields[i]))
}

fn not_found(table: &str, field: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "",
            "not found",
            &format!("<p>no cached field {}.{}</p>", esc(table), esc(field)),
        ),
    )
        .into_response()
}

/// A value as text for a page.
fn shown(v: &Value) -> String {
    match v {
        Value::Null(_) => "NULL".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t.clone(),
        Value::Timestamp(t) => t.to_rfc3339(),
        other => format!("{other:?}"),
    }
}

fn form(
    s: &Shared,
    table: &str,
    field: &str,
    action: &str,
    label: &str,
    key: Option<&str>,
) -> String {
    let key = key.map_or_else(String::new, |k| {
        format!("<input type=\"hidden\" name=\"key\" value=\"{}\">", esc(k))
    });
    format!(
        "<form method=\"post\" action=\"field/{t}/{f}/{a}\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{c}\">{key}<button type=\"submit\" id=\"{a}{id}\">{l}</button></form> ",
        t = esc(table),
        f = esc(field),
        a = esc(action),
        c = esc(&s.csrf),
        l = esc(label),
        id = if key.is_empty() { "" } else { "-row" },
    )
}

async fn field_page(
    State(s): State<AppState>,
    Path((table, field)): Path<(String, String)>,
) -> Response {
    let Some((spec, f)) = declared(&s, &table, &field) else {
        return not_found(&table, &field);
    };
    let c = &f.columns;
    let (t, k) = (spec.table.quoted(), spec.primary_key.quoted());
    let mut ctx = Ctx::from(&s.db);
    let sql = FieldSql::new(s.db.backend(), &spec.table, &spec.primary_key, c);
    let failing = ctx
        .fetch_values(
            sql.failing(50),
            &[],
            &[
                spec.key_type,
                SqlType::Int,
                SqlType::Timestamp,
                SqlType::Text,
            ],
        )
        .await;
    let oldest = ctx
        .fetch_values(
            format!(
                "SELECT {k}, {since} FROM {t} WHERE {needed} ORDER BY {since} LIMIT 20",
                since = c.stale_since.quoted(),
                needed = c.needed.quoted(),
            ),
            &[],
            &[spec.key_type, SqlType::Timestamp],
        )
        .await;
    let (failing, oldest) = match (failing, oldest) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return failure(&e),
    };
    let paused = crate::pauses::stopped(&s.db)
        .await
        .is_ok_and(|p| p.contains(&(table.clone(), field.clone())));
    let mut body = String::from("<p>");
    body.push_str(&form(
        &s,
        &table,
        &field,
        "retry-all",
        "retry all failing rows now",
        None,
    ));
    body.push_str(&form(
        &s,
        &table,
        &field,
        "recalculate-all",
        "recalculate every row",
        None,
    ));
    body.push_str(&if paused {
        form(&s, &table, &field, "resume", "resume", None)
    } else {
        form(&s, &table, &field, "pause", "pause", None)
    });
    let _ = write!(
        body,
        "</p><form method=\"get\" action=\"field/{t}/{f}/row\">row by key: <input name=\"key\" id=\"key\">\
         <button type=\"submit\" id=\"show\">show</button></form>",
        t = esc(&table),
        f = esc(&field)
    );
    body.push_str("<h2>failing rows</h2><table id=\"failing\"><tr><th>key</th><th>attempts</th><th>next attempt</th><th>last error</th><th></th></tr>");
    for r in &failing {
        let key = shown(&r[0]);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"bad error\">{}</td><td>{}</td></tr>",
            esc(&key),
            shown(&r[1]),
            esc(&shown(&r[2])),
            esc(&shown(&r[3])),
            form(&s, &table, &field, "retry", "retry now", Some(&key)),
        );
    }
    body.push_str("</table><h2>oldest stale rows</h2><table id=\"stale\"><tr><th>key</th><th>stale since</th></tr>");
    for r in &oldest {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&shown(&r[0])),
            esc(&shown(&r[1]))
        );
    }
    body.push_str("</table>");
    page(&s.prefix, &format!("{table}.{field}"), &body).into_response()
}

#[derive(Deserialize)]
struct KeyQuery {
    key: String,
}

async fn row_page(
    State(s): State<AppState>,
    Path((table, field)): Path<(String, String)>,
    Query(q): Query<KeyQuery>,
) -> Response {
    let Some((spec, f)) = declared(&s, &table, &field) else {
        return not_found(&table, &field);
    };
    let key = match Key::parse(&q.key, spec.key_type) {
        Ok(k) => k,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                page(
                    &s.prefix,
                    "bad key",
                    &format!("<p class=\"bad\">{}</p>", esc(&e.to_string())),
                ),
            )
                .into_response();
        }
    };
    let c = &f.columns;
    let cols = [
        (
            "value",
            format!("CAST({} AS TEXT)", c.value.quoted()),
            SqlType::Text,
        ),
        ("recalculation needed", c.needed.quoted(), SqlType::Bool),
        ("version", c.version.quoted(), SqlType::Int),
        ("stale since", c.stale_since.quoted(), SqlType::Timestamp),
        ("next attempt", c.next_attempt.quoted(), SqlType::Timestamp),
        ("attempts", c.attempts.quoted(), SqlType::Int),
        ("last error", c.last_error.quoted(), SqlType::Text),
    ];
    let list: Vec<&str> = cols.iter().map(|(_, e, _)| e.as_str()).collect();
    let types: Vec<SqlType> = cols.iter().map(|(_, _, t)| *t).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = $1",
        list.join(", "),
        spec.table.quoted(),
        spec.primary_key.quoted()
    );
    let rows = match Ctx::from(&s.db)
        .fetch_values(sql, &[key.to_value()], &types)
        .await
    {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    let Some(row) = rows.first() else {
        return (
            StatusCode::NOT_FOUND,
            page(
                &s.prefix,
                "no such row",
                &format!("<p>{table} has no row {}</p>", esc(&key.to_string())),
            ),
        )
            .into_response();
    };
    let mut body = String::from("<table id=\"row\">");
    for ((label, _, _), v) in cols.iter().zip(row) {
        let _ = write!(body, "<tr><th>{label}</th><td>{}</td></tr>", esc(&shown(v)));
    }
    body.push_str("</table><p>");
    body.push_str(&form(
        &s,
        &table,
        &field,
        "retry",
        "recalculate this row now",
        Some(&key.to_string()),
    ));
    body.push_str("</p>");
    page(&s.prefix, &format!("{table}.{field} row {key}"), &body).into_response()
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    key: Option<String>,
}

async fn action(
    State(s): State<AppState>,
    Path((table, field, action)): Path<(String, String, String)>,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A body that is not a form carries no CSRF token either.
    let f = form.map_or(
        ActionForm {
            csrf: None,
            key: None,
        },
        |Form(f)| f,
    );
    if !f.csrf.as_deref().is_some_and(|c| same(c, &s.csrf)) {
        return (
            StatusCode::FORBIDDEN,
            "refused: this form's CSRF token is missing or wrong (reload the page)\n",
        )
            .into_response();
    }
    let Some((spec, fs)) = declared(&s, &table, &field) else {
        return not_found(&table, &field);
    };
    let c = &fs.columns;
    let (t, k) = (spec.table.quoted(), spec.primary_key.quoted());
    let (needed, next, attempts) = (
        c.needed.quoted(),
        c.next_attempt.quoted(),
        c.attempts.quoted(),
    );
    let name = format!("{table}.{field}");
    let result = match action.as_str() {
        "retry" => {
            let Some(key) = f
                .key
                .as_deref()
                .and_then(|k| Key::parse(k, spec.key_type).ok())
            else {
                return (StatusCode::BAD_REQUEST, "retry needs the row's key\n").into_response();
            };
            // Due now; flagged (a fresh row is recalculated too).
            Ctx::from(&s.db)
                .execute(
                    format!("UPDATE {t} SET {needed} = TRUE, {next} = NULL WHERE {k} = $1"),
                    &[key.to_value()],
                )
                .await
                .map(drop)
        }
        "retry-all" => Ctx::from(&s.db)
            .execute(
                format!("UPDATE {t} SET {next} = NULL WHERE {needed} AND {attempts} > 0"),
                &[],
            )
            .await
            .map(drop),
        "recalculate-all" => Ctx::from(&s.db)
            .execute(format!("UPDATE {t} SET {needed} = TRUE"), &[])
            .await
            .map(drop),
        "pause" => s.registry.pause(&s.db, &name).await,
        "resume" => s.registry.resume(&s.db, &name).await,
        _ => return (StatusCode::NOT_FOUND, "no such action\n").into_response(),
    };
    match result {
        Ok(()) => {
            crate::worker::wake(Some(&s.db));
            Redirect::to(&format!("{}/field/{table}/{field}", s.prefix)).into_response()
        }
        Err(e) => failure(&e),
    }
}
