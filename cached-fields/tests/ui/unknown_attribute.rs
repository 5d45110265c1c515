use cached_fields::{Cached, CachedModel};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    id: i64,
    #[cached(depend_on("id"))]
    doubled: Cached<i64>,
}

fn main() {}
