//! Words for people: a count with its noun in the right number, a long
//! name shortened.

/// `1 file`, `0 files`, `3 files`.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// `text` in at most `max` characters (at least 3), cut in the middle
/// with an ellipsis: both ends of a name tell names apart
/// (`access.log.2026-11-30.gz`, `US/California/San Francisco`).
pub fn shortened(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let tail = (max - 1) / 2;
    let head: String = text.chars().take(max - 1 - tail).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{head}…{end}")
}

/// `1234567` as `1,234,567`, for people.
pub fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
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

    #[test]
    fn long_names_are_shortened_in_the_middle() {
        let long = "US/California/San Francisco International";
        assert_eq!(super::shortened(long, 20), "US/Califor…rnational");
        assert_eq!(super::shortened(long, 20).chars().count(), 20);
        assert_eq!(super::shortened("DE Germany", 20), "DE Germany");
        assert_eq!(super::shortened("ÄÖÜäöüßÄÖÜ", 5), "ÄÖ…ÖÜ");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
