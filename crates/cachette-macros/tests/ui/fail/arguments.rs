//! Arguments the loader cannot own, or that are not plain names.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

#[cached(cache = CACHE)]
async fn pattern((a, b): (u32, u32)) -> u32 {
    a + b
}

#[cached(cache = CACHE, key = "k")]
async fn mutable_reference(counter: &mut u32) -> u32 {
    *counter
}

#[cached(cache = CACHE, key = "k")]
async fn nested_reference(name: Option<&str>) -> u32 {
    name.map_or(0, |n| n.len() as u32)
}

#[cached(cache = CACHE, key = "k")]
async fn lifetime<'a>(name: std::borrow::Cow<'a, str>) -> u32 {
    name.len() as u32
}

struct Users;

impl Users {
    #[cached(cache = CACHE, key = "k")]
    async fn method(&self, id: u32) -> u32 {
        id
    }
}

fn main() {}
