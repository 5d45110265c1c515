use cached_fields::{BoxError, Cached, CachedModel};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    id: i64,
    #[cached]
    doubled: Cached<i64>,
}

impl Thing {
    async fn calculate_doubled(&self, _: &mut String) -> Result<i64, BoxError> {
        Ok(2)
    }
}

fn main() {}
