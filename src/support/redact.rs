//! Keeps credentials out of logs and error messages.

/// A URL, or a comma-separated list of them (sentinels, cluster nodes), with any password
/// replaced by `***`.
pub(crate) fn url(raw: &str) -> String {
    if raw.contains(',') {
        return raw.split(',').map(url).collect::<Vec<_>>().join(",");
    }
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let after = &raw[scheme_end + 3..];
    let authority_end = after.find('/').unwrap_or(after.len());
    match after[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &after[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}://{masked}{}", &raw[..scheme_end], &after[at..])
        }
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_masked() {
        assert_eq!(super::url("redis://:hunter2@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(super::url("redis://u:p@h:1"), "redis://u:***@h:1");
        assert_eq!(super::url("redis://h:1"), "redis://h:1");
        assert_eq!(
            super::url("redis://u:p@h:1,redis://u:p@h:2, redis://:q@h:3"),
            "redis://u:***@h:1,redis://u:***@h:2, redis://:***@h:3",
            "every address of a list"
        );
    }
}
