//! An argument of the default key that cannot form a key.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

struct Point {
    x: f64,
}

#[cached(cache = CACHE)]
async fn distance(id: u32, point: Point) -> u32 {
    id + point.x as u32
}

fn main() {}
