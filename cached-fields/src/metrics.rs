//! Prometheus metrics (feature `web`), in the `OpenMetrics` text format of
//! the `prometheus-client` crate (labels in the order `table`, `field`): the worker counts its recalculations and times its
//! calculations as it goes; the per-field gauges are read from the tables
//! on each scrape (the figures `status` shows). Without the feature the
//! worker's calls are no-ops.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `cached_fields_rows`, `cached_fields_stale_rows`, `cached_fields_failing_rows`, `cached_fields_oldest_stale_seconds` | gauge | `table`, `field` |
//! | `cached_fields_paused` (1 when paused or held) | gauge | `table`, `field` |
//! | `cached_fields_recalculations_total` | counter | `table`, `field`, `outcome` = `stored` \| `failed` \| `superseded` |
//! | `cached_fields_recalculation_seconds` (calculation time per row; a batch form's time is shared among its rows) | histogram | `table`, `field` |
//! | `cached_fields_freshness_lag_seconds` (a row becoming stale → its value stored; measured while metrics are served) | histogram | `table`, `field` |
//! | `cached_fields_live_workers` | gauge | |

#[cfg(feature = "web")]
mod imp {
    use std::sync::LazyLock;
    use std::sync::atomic::AtomicU64;

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry as Exposition;

    use crate::db::Db;
    use crate::error::Result;
    use crate::registry::Registry;

    /// Label pairs in the order they are printed (`table` first).
    pub(super) type Labels = Vec<(&'static str, String)>;

    pub(super) fn labels(table: &str, field: &str) -> Labels {
        vec![("table", table.to_owned()), ("field", field.to_owned())]
    }

    fn seconds() -> Histogram {
        Histogram::new([
            0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 20.0,
        ])
    }

    fn lag() -> Histogram {
        Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 600.0,
        ])
    }

    pub(super) struct Metrics {
        pub(super) recalculations: Family<Labels, Counter>,
        pub(super) seconds: Family<Labels, Histogram, fn() -> Histogram>,
        pub(super) lag: Family<Labels, Histogram, fn() -> Histogram>,
    }

    pub(super) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        recalculations: Family::default(),
        seconds: Family::new_with_constructor(seconds),
        lag: Family::new_with_constructor(lag),
    });

    type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

    /// The whole exposition: this process's counters and histograms, and
    /// the gauges read from the database now.
    pub(crate) async fn render(db: &Db, registry: &Registry) -> Result<String> {
        let mut out = Exposition::default();
        let families: [(&str, &str, GaugeFamily); 5] = [
            (
                "cached_fields_rows",
                "Rows of the field's table",
                Family::default(),
            ),
            (
                "cached_fields_stale_rows",
                "Rows flagged for recalculation",
                Family::default(),
            ),
            (
                "cached_fields_failing_rows",
                "Flagged rows whose last calculation failed",
                Family::default(),
            ),
            (
                "cached_fields_oldest_stale_seconds",
                "Seconds since the longest-waiting flagged row became stale (0 when none)",
                Family::default(),
            ),
            (
                "cached_fields_paused",
                "1 when the field is paused or held, else 0",
                Family::default(),
            ),
        ];
        for s in registry.status(db).await? {
            let l = labels(&s.table, &s.field);
            // Every field's counters exist from the start, at 0 until this
            // process's workers count something.
            for outcome in ["stored", "failed", "superseded"] {
                let mut with = l.clone();
                with.push(("outcome", outcome.to_owned()));
                drop(METRICS.recalculations.get_or_create(&with));
            }
            #[allow(clippy::cast_precision_loss)] // row counts far below 2^52
            let figures = [
                s.rows as f64,
                s.stale as f64,
                s.failing as f64,
                s.oldest_stale_secs.unwrap_or(0.0),
                if s.paused || s.held { 1.0 } else { 0.0 },
            ];
            for ((_, _, family), v) in families.iter().zip(figures) {
                family.get_or_create(&l).set(v);
            }
        }
        for (name, help, family) in families {
            out.register(name, help, family);
        }
        let live: Gauge<f64, AtomicU64> = Gauge::default();
        #[allow(clippy::cast_precision_loss)] // a handful of workers
        live.set(
            registry
                .workers(db)
                .await?
                .iter()
                .filter(|w| w.alive)
                .count() as f64,
        );
        out.register(
            "cached_fields_live_workers",
            "Workers heard from within three heartbeats",
            live,
        );
        out.register(
            "cached_fields_recalculations",
            "Recalculations by the workers of this process, by outcome",
            METRICS.recalculations.clone(),
        );
        out.register(
            "cached_fields_recalculation_seconds",
            "Time one calculation took (a batch form's time shared among its rows)",
            METRICS.seconds.clone(),
        );
        out.register(
            "cached_fields_freshness_lag_seconds",
            "From a row becoming stale to its new value stored, as the workers of this process saw it",
            METRICS.lag.clone(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &out)
            .map_err(|e| crate::Error::declaration("metrics", e.to_string()))?;
        Ok(text)
    }

    /// Serves `GET /metrics` on `listener` until the process ends.
    pub(crate) async fn serve(
        listener: tokio::net::TcpListener,
        db: Db,
        registry: Registry,
    ) -> std::io::Result<()> {
        use axum::http::{StatusCode, header};
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let (db, registry) = (db.clone(), registry.clone());
                async move {
                    match render(&db, &registry).await {
                        Ok(text) => (
                            StatusCode::OK,
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        ),
                        Err(e) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                            format!("cannot read the figures: {e}\n"),
                        ),
                    }
                }
            }),
        );
        super::enable();
        axum::serve(listener, app).await
    }
}

#[cfg(feature = "web")]
pub(crate) use imp::{render, serve};

/// Whether something serves the metrics in this process (then the worker
/// also reads what it needs for the freshness lag, one query per batch).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns on what only served metrics need.
#[cfg(feature = "web")]
pub(crate) fn enable() {
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// When each of `keys` became stale (`F_stale_since`), read just before
/// their values are written back: only while metrics are served.
pub(crate) async fn stale_since(
    ctx: &mut crate::db::Ctx<'_>,
    table: &crate::ident::Ident,
    primary_key: &crate::ident::Ident,
    key_type: crate::value::SqlType,
    column: &crate::ident::Ident,
    keys: &[crate::key::Key],
) -> std::collections::HashMap<crate::key::Key, chrono::DateTime<chrono::Utc>> {
    use crate::value::{SqlType, Value};
    let mut out = std::collections::HashMap::new();
    if keys.is_empty() || !ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return out;
    }
    let params: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {k}, {c} FROM {t} WHERE {k} IN ({})",
        params.join(", "),
        k = primary_key.quoted(),
        c = column.quoted(),
        t = table.quoted(),
    );
    let args: Vec<Value> = keys.iter().map(crate::key::Key::to_value).collect();
    if let Ok(rows) = ctx
        .fetch_values(sql, &args, &[key_type, SqlType::Timestamp])
        .await
    {
        for r in rows {
            if let [k, Value::Timestamp(at)] = &r[..]
                && let Some(k) = crate::key::Key::from_value(k)
            {
                out.insert(k, *at);
            }
        }
    }
    out
}

/// Records the lag of a value of `table.field` stored now whose row
/// became stale at `since`.
pub(crate) fn fresh_after(table: &str, field: &str, since: chrono::DateTime<chrono::Utc>) {
    #[cfg(feature = "web")]
    {
        let secs = (chrono::Utc::now() - since).num_microseconds().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)] // microseconds of lag
        imp::METRICS
            .lag
            .get_or_create_owned(&imp::labels(table, field))
            .observe(secs.max(0) as f64 / 1e6);
    }
    #[cfg(not(feature = "web"))]
    let _ = (table, field, since);
}

/// Counts `n` recalculations of `table.field` ending in `outcome`.
pub(crate) fn count(table: &str, field: &str, outcome: &str, n: u64) {
    #[cfg(feature = "web")]
    if n > 0 {
        let mut l = imp::labels(table, field);
        l.push(("outcome", outcome.to_owned()));
        imp::METRICS.recalculations.get_or_create(&l).inc_by(n);
    }
    #[cfg(not(feature = "web"))]
    let _ = (table, field, outcome, n);
}

/// Records `rows` calculations of `table.field` that took `secs` in all.
pub(crate) fn calculated(table: &str, field: &str, rows: usize, secs: f64) {
    #[cfg(feature = "web")]
    if rows > 0 {
        let h = imp::METRICS
            .seconds
            .get_or_create_owned(&imp::labels(table, field));
        #[allow(clippy::cast_precision_loss)] // a batch is at most 10,000 rows
        let each = secs / rows as f64;
        for _ in 0..rows {
            h.observe(each);
        }
    }
    #[cfg(not(feature = "web"))]
    let _ = (table, field, rows, secs);
}
