use cached_fields::{Cached, CachedModel};

#[derive(Debug, CachedModel)]
struct Thing {
    id: i64,
    doubled: Cached<i64>,
}

fn main() {}
