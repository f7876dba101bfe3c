//! Key and tag formats that name no argument.
use cachette::cached;

static CACHE: std::sync::LazyLock<cachette::cache::Cache> = std::sync::LazyLock::new(|| unimplemented!());

#[cached(cache = CACHE, key = "user:{user_id}")]
async fn unknown_argument(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, key = "user:{id}", tags = ["team:{team}"])]
async fn unknown_tag_argument(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, key = "user:{}")]
async fn positional(id: u32) -> u32 {
    id
}

#[cached(cache = CACHE, key = "user:{id")]
async fn unclosed(id: u32) -> u32 {
    id
}

fn main() {}
