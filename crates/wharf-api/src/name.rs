//! Repository names and tags, validated against the distribution spec's grammar.

/// Longest repository name Wharf accepts (clients cap host plus name at 255).
pub const MAX_NAME_LEN: usize = 255;

/// Checks a repository name against
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of one or more lowercase alphanumerics.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator: ".", "_", "__" or one or more "-".
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Checks a tag against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == b'_')
        && rest.len() <= 127
        && rest.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for n in ["a", "library/busybox", "a.b_c__d---e/f0", "wharf/test-1/deep/path", "0"] {
            assert!(validate_name(n), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let long = "a".repeat(256);
        for n in ["", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "../etc", "a/../b", "a b", "é", &long] {
            assert!(!validate_name(n), "{n}");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tag("latest"));
        assert!(validate_tag("_v1.0-rc.1"));
        assert!(validate_tag(&"a".repeat(128)));
        assert!(!validate_tag(&"a".repeat(129)));
        for t in ["", ".a", "-a", "a/b", "a:b", "sha256:abc"] {
            assert!(!validate_tag(t), "{t}");
        }
    }

    proptest::proptest! {
        #[test]
        fn validators_never_panic(s in "\\PC{0,300}") {
            let _ = validate_name(&s);
            let _ = validate_tag(&s);
        }

        #[test]
        fn generated_names_are_valid(s in "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}){0,3}") {
            proptest::prop_assert!(validate_name(&s));
        }
    }
}
