use super::*;
use crate::error::ErrorKind;

const KNOWN: &[&str] = &[
    "prefix",
    "tags",
    "max_key_len",
    "default_ttl",
    "max_entries",
];

fn params(query: &str) -> Result<UrlParams> {
    let url = Url::parse(&format!("test://?{query}")).unwrap();
    UrlParams::parse(&url, "test", &[KNOWN])
}

#[test]
fn parse_bytes_accepts_units_in_any_case() {
    assert_eq!(parse_byte_size("4096"), Some(4096));
    assert_eq!(parse_byte_size("64MiB"), Some(64 << 20));
    assert_eq!(parse_byte_size("64mib"), Some(64 << 20));
    assert_eq!(parse_byte_size("10 KB"), Some(10_000));
    assert_eq!(parse_byte_size("2GiB"), Some(2 << 30));
    assert_eq!(parse_byte_size("1gb"), Some(1_000_000_000));
}

#[test]
fn parse_bytes_rejects_garbage_and_overflow() {
    for bad in [
        "",
        "MiB",
        "1.5GiB",
        "-1",
        "12 parsecs",
        "99999999999999999999",
        "20000000TiB",
    ] {
        assert_eq!(parse_byte_size(bad), None, "{bad}");
    }
}

#[test]
fn every_flag_spelling_is_accepted_in_any_case() {
    for (text, expected) in [
        ("true", true),
        ("1", true),
        ("YES", true),
        ("On", true),
        ("false", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        let mut params = params(&format!("tags={text}")).unwrap();
        assert_eq!(params.flag("tags").unwrap(), Some(expected), "{text}");
    }
    let err = params("tags=maybe").unwrap().flag("tags").unwrap_err();
    assert!(err.message().contains("parameter `tags`"), "{err}");
}

#[test]
fn text_is_percent_decoded_with_plus_as_a_space() {
    let mut params = params("prefix=a%3Ab+c").unwrap();
    assert_eq!(params.text("prefix").as_deref(), Some("a:b c"));
}

#[test]
fn text_that_is_not_utf8_is_an_error_naming_the_parameter() {
    let err = params("prefix=%FF%FE").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("parameter `prefix`") && err.message().contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn a_malformed_escape_is_an_error_naming_the_parameter() {
    let err = params("prefix=50%").unwrap_err();
    assert!(
        err.message().contains("parameter `prefix`") && err.message().contains("percent escape"),
        "{err}"
    );
}

#[test]
fn decode_never_shows_the_text() {
    let err = decode("hunter2%zz", "test", "the password").unwrap_err();
    assert!(!err.message().contains("hunter2"), "{err}");
    assert_eq!(decode("p%40ss", "test", "the password").unwrap(), "p@ss");
}

#[test]
fn key_limits_are_byte_sizes_that_must_fit() {
    let mut params = params("max_key_len=1KiB").unwrap();
    assert_eq!(params.byte_len("max_key_len").unwrap(), Some(1024));
    if usize::BITS < 64 {
        let err = self::params("max_key_len=1TiB")
            .unwrap()
            .byte_len("max_key_len")
            .unwrap_err();
        assert!(err.message().contains("max_key_len"), "{err}");
    }
}

#[test]
fn an_unknown_parameter_names_the_scheme_and_suggests_the_nearest() {
    let err = params("prefx=a").unwrap_err();
    assert!(
        err.message()
            .contains("unknown parameter `prefx` for test://; expected one of prefix, tags")
            && err.message().contains("did you mean `prefix`?"),
        "{err}"
    );
}

#[test]
fn redact_hides_userinfo_passwords() {
    assert_eq!(redact("redis://user:secret@host"), "redis://user:***@host");
    assert_eq!(
        redact("redis://:secret@host:6379"),
        "redis://:***@host:6379"
    );
    assert_eq!(redact("rediss://user@host"), "rediss://user@host");
}

#[test]
fn redact_hides_secret_query_parameters() {
    assert_eq!(
        redact("postgres://host/db?user=app&password=secret"),
        "postgres://host/db?user=app&password=***"
    );
}

#[test]
fn redact_hides_passwords_of_urls_inside_parameters() {
    let redacted = redact("s3://bucket/cache?endpoint=http://user:SECRET@127.0.0.1:9000&region=x");
    assert!(!redacted.contains("SECRET"), "{redacted}");
    assert!(redacted.contains("region=x"), "{redacted}");
    let plain = "s3://bucket/cache?endpoint=http://127.0.0.1:9000";
    assert_eq!(redact(plain), plain);
}

#[test]
fn redact_leaves_urls_without_secrets_as_written() {
    for url in [
        "memory://?max_entries=10&policy=lru",
        "file:///var/cache/app",
        "redis://host/0",
    ] {
        assert_eq!(redact(url), url);
    }
}

#[test]
fn redact_hides_passwords_in_unparseable_urls() {
    let redacted = redact("redis://user:pa/ss@host:notaport");
    assert!(!redacted.contains("pa/ss"), "{redacted}");
    let redacted = redact("redis://user:se?cret@host:x");
    assert!(
        !redacted.contains("se?cret") && !redacted.contains("cret"),
        "{redacted}"
    );
}

#[test]
fn redact_text_hides_every_url_in_a_message() {
    let text = "invalid type: string \"redis://u:one@a\", and `rediss://v:two@b/0?token=three`";
    let redacted = redact_text(text);
    for secret in ["one", "two", "three"] {
        assert!(!redacted.contains(secret), "{redacted}");
    }
    assert!(
        redacted.starts_with("invalid type: string \"redis://u:***@a\""),
        "{redacted}"
    );
}

#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("max_entires", "max_entries"), 2);
    assert_eq!(edit_distance("sesions", "sessions"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

#[test]
fn did_you_mean_suggests_only_close_names() {
    assert_eq!(
        did_you_mean("sesions", ["main", "sessions"]),
        "; did you mean `sessions`?"
    );
    assert_eq!(did_you_mean("zzz", ["main", "sessions"]), "");
}
