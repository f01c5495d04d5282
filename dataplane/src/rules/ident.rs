//! Table, chain, set and object names as nft's scanner reads them: a leaf, so that the
//! statement modules (helpers, sets) check names without importing the validator.

/// Longest table, chain or set name (`NFT_NAME_MAXLEN` is 256 with the NUL).
pub const MAX_NAME: usize = 255;

/// Why `s` is not a valid table, chain or set name (`None`: it is).
pub fn name_problem(s: &str) -> Option<String> {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return Some("a name cannot be empty".into());
    };
    if s.len() > MAX_NAME {
        return Some(format!("names have at most {MAX_NAME} bytes"));
    }
    if !(first.is_ascii_alphabetic() || first == '_' || first == '.') {
        return Some(format!("{s:?}: a name starts with a letter, `_` or `.`"));
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || "/-_.".contains(c))) {
        return Some(format!(
            "{s:?}: a name holds only letters, digits and `/ - _ .`"
        ));
    }
    None
}
