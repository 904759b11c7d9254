//! The literal prefilter of `FullRegex` never changes an answer: for
//! generated patterns and every short haystack over a small alphabet,
//! `FullRegex::is_match` (which skips the regex when the required text is
//! absent) agrees with the bare regex.

use meshwasm_core::regex::FullRegex;

/// Pieces patterns are made of: literals of the haystacks' alphabet, and
/// the syntax around literals that the prefilter has to read right.
const PIECES: &[&str] = &[
    "a",
    "b",
    ";",
    "ab",
    "ba",
    "a;b",
    "]",
    r"\]",
    r"\.",
    ".",
    ".*",
    ".*?",
    "[ab]",
    "[^a]",
    "[]a]",
    "[^]b]",
    "[[:alpha:]]",
    r"[\]]",
    r"\d",
    r"\b",
    "(",
    ")",
    "(?:",
    "(?P<n>",
    "|",
    "?",
    "*",
    "+",
    "+?",
    "{2}",
    "{0,2}",
    "{1,}",
    "^",
    "$",
    "(a|b)",
    "(?i)",
    "(?s:.)",
];

#[test]
fn prefilter_agrees_with_the_regex_on_every_short_haystack() {
    let mut rng = fastrand::Rng::with_seed(22);
    let haystacks = all_strings(&['a', 'b', ';', ']'], 6);
    let (mut patterns, mut filtered, mut matches) = (0, 0, 0);
    while patterns < 400 {
        let len = rng.usize(1..7);
        let pattern: String = (0..len)
            .map(|_| PIECES[rng.usize(..PIECES.len())])
            .collect();
        let (Ok(ours), Ok(bare)) = (
            FullRegex::new(&pattern),
            regex_lite::Regex::new(&format!("^(?:{pattern})$")),
        ) else {
            continue;
        };
        patterns += 1;
        filtered += usize::from(ours.required_text().is_some());
        for haystack in &haystacks {
            let expected = bare.is_match(haystack);
            matches += usize::from(expected);
            assert_eq!(
                ours.is_match(haystack),
                expected,
                "pattern {pattern:?} (required {:?}) on {haystack:?}",
                ours.required_text()
            );
        }
    }
    // The check means something only if many patterns had a literal to
    // filter on and many haystacks matched.
    assert!(
        filtered > 100,
        "only {filtered} of {patterns} patterns had a required text"
    );
    assert!(matches > 10_000, "only {matches} matches");
}

#[test]
fn istio_cookie_rule_skips_the_regex_only_without_the_user() {
    let jason = FullRegex::new("^(.*?;)?(user=jason)(;.*)?$").unwrap();
    assert_eq!(jason.required_text(), Some("user=jason"));
    assert!(jason.is_match("theme=dark;user=jason"));
    assert!(jason.is_match("user=jason"));
    // Has the text, still no match: the regex decides.
    assert!(!jason.is_match("user=jasonx"));
    assert!(!jason.is_match("theme=dark; user=kim"));
}

fn all_strings(alphabet: &[char], max_len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..max_len {
        last = last
            .iter()
            .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}
