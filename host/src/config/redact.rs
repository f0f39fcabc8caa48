//! Secrets out of what is shown: URLs without their credentials, for messages and debug output.

/// What stands in for a hidden secret in messages and debug output.
pub const REDACTED: &str = "<redacted>";

/// `url` as it may be shown in an error or a log line: userinfo (`user:password@`) and the
/// query string (where API keys travel) are replaced by `<redacted>`, the rest is kept as
/// written so the operator recognises the address. Works on text that is not a valid URL,
/// since the messages that need it are often about a URL being wrong; so everything up to the
/// last `@` counts as userinfo, even an unescaped `/`, `?` or `#` in a password.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let mut shown = String::with_capacity(url.len());
    shown.push_str(scheme);
    let rest = match rest.rfind('@') {
        Some(at) => {
            shown.push_str(REDACTED);
            &rest[at..]
        }
        None => rest,
    };
    match rest.find(['?', '#']) {
        Some(i) if rest.as_bytes()[i] == b'?' => {
            shown.push_str(&rest[..=i]);
            shown.push_str(REDACTED);
        }
        // A fragment is never sent; leaving it out keeps the message short.
        Some(i) => shown.push_str(&rest[..i]),
        None => shown.push_str(rest),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_are_hidden_the_rest_is_kept() {
        for (url, shown) in [
            ("http://registry:8081", "http://registry:8081"),
            ("https://svc:pa55@registry:8081/apis/ccompat/v7", "https://<redacted>@registry:8081/apis/ccompat/v7"),
            ("http://key@r/?api_key=k3y&x=1", "http://<redacted>@r/?<redacted>"),
            ("http://r:8081/path?token=t#frag", "http://r:8081/path?<redacted>"),
            ("http://r:8081/path#frag", "http://r:8081/path"),
            ("http://svc:p/ss?w#d@r:8081/v7", "http://<redacted>@r:8081/v7"),
            ("svc:pa55@r:8081", "<redacted>@r:8081"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
