use cached_fields::CachedModel;

#[derive(Debug, CachedModel)]
#[cached_model(table = "things")]
struct Thing {
    id: i64,
    #[cached]
    doubled: i64,
}

fn main() {}
