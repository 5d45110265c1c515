//! The seed's example models: lampposts and the pigeons that land on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cached_fields::{BoxError, Cached, CachedModel, Conn, Ctx, Registry};

/// Microseconds of CPU each lamppost calculate function burns first (`--cost-us`).
static COST_US: AtomicU64 = AtomicU64::new(0);

/// Sets the simulated cost of each calculation.
pub(crate) fn set_cost_us(us: u64) {
    COST_US.store(us, Ordering::Relaxed);
}

/// One lamppost in this many (by id) has a `slow_full_name` calculation
/// that never returns (0: none), for the benchmark's `hang` figure.
static HANG_EVERY: AtomicU64 = AtomicU64::new(0);

/// Makes one lamppost in `n` hang its `slow_full_name` (0: none).
pub(crate) fn set_hang_every(n: u64) {
    HANG_EVERY.store(n, Ordering::Relaxed);
}

/// Calculations of `total_weight` in this process (for the benchmark).
static TOTAL_WEIGHT_CALCULATIONS: AtomicU64 = AtomicU64::new(0);

/// How many times `total_weight` was calculated in this process.
pub(crate) fn total_weight_calculations() -> u64 {
    TOTAL_WEIGHT_CALCULATIONS.load(Ordering::Relaxed)
}

/// Burns the configured cost, like the seed's `ackermann(5, 2)`.
fn burn() {
    let cost = Duration::from_micros(COST_US.load(Ordering::Relaxed));
    let start = Instant::now();
    while start.elapsed() < cost {
        std::hint::spin_loop();
    }
}

/// A lamppost with two cached fields.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lampposts")]
pub(crate) struct Lamppost {
    /// Primary key.
    #[cached_model(primary_key)]
    pub id: i64,
    /// The lamppost's own weight.
    pub weight: i64,
    /// Its first name.
    pub first_name: String,
    /// Its country.
    pub country: String,
    /// The street it stands on, if any.
    pub street_id: Option<i64>,
    /// `weight` plus the weight of every pigeon on it.
    #[cached(calculate = Lamppost::calculate_total_weight,
             calculate_many = Lamppost::calculate_total_weights,
             depends_on("weight", "pigeons(lamppost_id).weight"))]
    pub total_weight: Cached<i64>,
    /// "The {`total_weight`} {`first_name`} of {country}".
    #[cached(calculate = Lamppost::calculate_slow_full_name, temporal_triggers,
             depends_on("first_name", "country", "total_weight"))]
    pub slow_full_name: Cached<String>,
}

impl Lamppost {
    /// Loads one lamppost by id.
    pub(crate) const SELECT_BY_ID: &'static str = "SELECT * FROM lampposts WHERE id = $1";

    pub(crate) async fn calculate_total_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        TOTAL_WEIGHT_CALCULATIONS.fetch_add(1, Ordering::Relaxed);
        burn();
        let pigeons: i64 =
            match ctx.conn().await? {
                Conn::Sqlite(c) => {
                    sqlx::query_scalar(
                        "SELECT COALESCE(SUM(weight), 0) FROM pigeons WHERE lamppost_id = $1",
                    )
                    .persistent(cached_fields::named_statements())
                    .bind(self.id)
                    .fetch_one(c)
                    .await?
                }
                Conn::Postgres(c) => sqlx::query_scalar(
                    "SELECT COALESCE(SUM(weight), 0)::BIGINT FROM pigeons WHERE lamppost_id = $1",
                )
                .persistent(cached_fields::named_statements())
                .bind(self.id)
                .fetch_one(c)
                .await?,
                _ => return Err("unsupported backend".into()),
            };
        Ok(self.weight + pigeons)
    }

    /// The batch form the worker uses: one query for many lampposts.
    pub(crate) async fn calculate_total_weights(
        rows: &[&Self],
        ctx: &mut Ctx<'_>,
    ) -> Result<Vec<i64>, BoxError> {
        TOTAL_WEIGHT_CALCULATIONS.fetch_add(rows.len() as u64, Ordering::Relaxed);
        for _ in rows {
            burn();
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let sums: Vec<(i64, i64)> = match ctx.conn().await? {
            Conn::Sqlite(c) => {
                sqlx::query_as(
                    "SELECT lamppost_id, COALESCE(SUM(weight), 0) FROM pigeons \
                     WHERE lamppost_id IN (SELECT value FROM json_each($1)) GROUP BY lamppost_id",
                )
                .persistent(cached_fields::named_statements())
                .bind(serde_json::to_string(&ids)?)
                .fetch_all(c)
                .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_as(
                    "SELECT lamppost_id, COALESCE(SUM(weight), 0)::BIGINT FROM pigeons \
                     WHERE lamppost_id = ANY($1) GROUP BY lamppost_id",
                )
                .persistent(cached_fields::named_statements())
                .bind(&ids)
                .fetch_all(c)
                .await?
            }
            _ => return Err("unsupported backend".into()),
        };
        let sums: HashMap<i64, i64> = sums.into_iter().collect();
        Ok(rows
            .iter()
            .map(|r| r.weight + sums.get(&r.id).copied().unwrap_or(0))
            .collect())
    }

    pub(crate) async fn calculate_slow_full_name(
        &self,
        ctx: &mut Ctx<'_>,
    ) -> Result<String, BoxError> {
        burn();
        let every = HANG_EVERY.load(Ordering::Relaxed);
        if every > 0 && self.id.unsigned_abs().is_multiple_of(every) {
            std::future::pending::<()>().await;
        }
        let total = self.total_weight(ctx).await?;
        Ok(format!(
            "The {total} {} of {}",
            self.first_name, self.country
        ))
    }
}

/// One `BIGINT` computed by `sql` for the row `id` (`$1`).
async fn scalar(ctx: &mut Ctx<'_>, sql: &'static str, id: i64) -> Result<i64, BoxError> {
    Ok(match ctx.conn().await? {
        Conn::Sqlite(c) => {
            sqlx::query_scalar(sql)
                .persistent(cached_fields::named_statements())
                .bind(id)
                .fetch_one(c)
                .await?
        }
        Conn::Postgres(c) => {
            sqlx::query_scalar(sql)
                .persistent(cached_fields::named_statements())
                .bind(id)
                .fetch_one(c)
                .await?
        }
        _ => return Err("unsupported backend".into()),
    })
}

/// A street: its lampposts, and the pigeons on them.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "streets")]
pub(crate) struct Street {
    /// Primary key.
    #[cached_model(primary_key)]
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The weight of every pigeon on the street's lampposts: two hops back.
    #[cached(calculate = Street::calculate_pigeon_weight,
             depends_on("lampposts(street_id).pigeons(lamppost_id).weight"))]
    pub pigeon_weight: Cached<i64>,
    /// The largest `total_weight` among its lampposts: a chain on another
    /// table's cached field.
    #[cached(calculate = Street::calculate_heaviest,
             depends_on("lampposts(street_id).total_weight"))]
    pub heaviest: Cached<i64>,
}

impl Street {
    /// What [`Street::pigeon_weight`] is, in SQL.
    pub(crate) const PIGEON_WEIGHT: &'static str = "SELECT CAST(COALESCE(SUM(p.weight), 0) AS BIGINT) FROM pigeons p \
         JOIN lampposts l ON l.id = p.lamppost_id WHERE l.street_id = $1";

    async fn calculate_pigeon_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        scalar(ctx, Self::PIGEON_WEIGHT, self.id).await
    }

    async fn calculate_heaviest(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        // The lampposts' stored values: the worker brings them up to date
        // first (their new values flag this field again otherwise).
        scalar(
            ctx,
            "SELECT CAST(COALESCE(MAX(cached_total_weight), 0) AS BIGINT) FROM lampposts \
             WHERE street_id = $1",
            self.id,
        )
        .await
    }
}

/// A pigeon, and where it perches.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pigeons")]
pub(crate) struct Pigeon {
    /// Primary key.
    #[cached_model(primary_key)]
    pub id: i64,
    /// The lamppost it sits on.
    pub lamppost_id: i64,
    /// "{`first_name`} of {country} on {street name}" of its lamppost (or
    /// "no street"): two hops forward.
    #[cached(calculate = Pigeon::calculate_perch,
             depends_on("lamppost_id->lampposts.first_name", "lamppost_id->lampposts.country",
                        "lamppost_id->lampposts.street_id->streets.name"))]
    pub perch: Cached<String>,
}

impl Pigeon {
    /// The perch of the pigeon `$1`, in SQL.
    pub(crate) const PERCH: &'static str = "SELECT l.first_name || ' of ' || l.country || ' on ' || COALESCE(s.name, 'no street') \
         FROM pigeons p JOIN lampposts l ON l.id = p.lamppost_id \
         LEFT JOIN streets s ON s.id = l.street_id WHERE p.id = $1";

    async fn calculate_perch(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(match ctx.conn().await? {
            Conn::Sqlite(c) => {
                sqlx::query_scalar(Self::PERCH)
                    .persistent(cached_fields::named_statements())
                    .bind(self.id)
                    .fetch_one(c)
                    .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_scalar(Self::PERCH)
                    .persistent(cached_fields::named_statements())
                    .bind(self.id)
                    .fetch_one(c)
                    .await?
            }
            _ => return Err("unsupported backend".into()),
        })
    }
}

/// The registry of the app's models.
pub(crate) fn registry() -> cached_fields::Result<Registry> {
    Registry::new()
        .register::<Lamppost>()?
        .register::<Street>()?
        .register::<Pigeon>()
}
