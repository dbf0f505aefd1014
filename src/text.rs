//! Words for people: a count with its noun in the right number.

/// `1 file`, `0 files`, `3 files`.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(super::counted(1u64, "file", "files"), "1 file");
        assert_eq!(super::counted(0u64, "file", "files"), "0 files");
        assert_eq!(
            super::counted(2u32, "directory", "directories"),
            "2 directories"
        );
    }
}
