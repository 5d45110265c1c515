use cached_fields::{BoxError, Cached, CachedModel, Ctx};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    id: f64,
    #[cached]
    doubled: Cached<i64>,
}

impl Thing {
    async fn calculate_doubled(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(2)
    }
}

fn main() {}
