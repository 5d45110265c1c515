use cached_fields::{Cached, CachedModel};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    id: i64,
    #[cached(lazy, eager)]
    doubled: Cached<i64>,
}

fn main() {}
