use cached_fields::{Cached, CachedModel};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    slug: String,
    doubled: Cached<i64>,
}

fn main() {}
