//! Strings made once per delivery, without `format!`: its machinery costs about a thousand
//! instructions a call, several times the copying itself (BENCHMARKS.md, "Issue 16, ninth
//! slice").

/// `parts` end to end, in one allocation of the exact size.
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_joins_in_order_at_exact_size() {
        let s = concat(&["wh:", "stats:", "ep_1", ":", "1764799200"]);
        assert_eq!(s, "wh:stats:ep_1:1764799200");
        assert_eq!(s.capacity(), s.len());
        assert_eq!(concat(&[]), "");
    }
}
