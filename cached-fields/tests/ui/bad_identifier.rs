use cached_fields::{Cached, CachedModel};

#[derive(Debug, CachedModel)]
#[cached_model(table = "things; DROP TABLE users")]
struct Thing {
    id: i64,
    doubled: Cached<i64>,
}

fn main() {
    // One mistake, one error: the type still implements CachedModel.
    fn model<M: cached_fields::CachedModel>() {}
    model::<Thing>();
}
