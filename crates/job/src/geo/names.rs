//! Country names for codes, so a report can say `DE Germany` rather than
//! leave a reader to decode `DE`. The names are CLDR's English ones, the
//! names people use ("South Korea", not ISO's "Korea (Republic of)"), from
//! `data/names/countries.tsv`, embedded in the binary.

use std::collections::HashMap;
use std::sync::LazyLock;

static NAMES: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    include_str!("../../data/names/countries.tsv")
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect()
});

/// The English name of the country with ISO 3166-1 alpha-2 code `code`
/// (`GB`: "United Kingdom"), or `None` for a code the list lacks, such as
/// a registry's `AP`.
pub fn country_name(code: &str) -> Option<&'static str> {
    NAMES.get(code).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_names_people_use() {
        assert_eq!(country_name("DE"), Some("Germany"));
        assert_eq!(country_name("GB"), Some("United Kingdom"));
        assert_eq!(country_name("KR"), Some("South Korea"));
        assert_eq!(country_name("HK"), Some("Hong Kong"));
        assert_eq!(country_name("de"), None);
        assert_eq!(country_name("ZZ"), None);
        assert_eq!(country_name(""), None);
        assert!(NAMES.len() > 240, "{}", NAMES.len());
    }
}
