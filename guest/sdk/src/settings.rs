//! A validator's settings: the string pairs from the host's config, and which of them it asked for.

use std::cell::RefCell;

/// A validator's settings: string keys and values from the host's config.
///
/// It remembers every key asked for, so that after [`crate::FromSettings::from_settings`] a key
/// the validator never asked for is refused: a misspelt setting stops the start.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pairs: Vec<(String, String)>,
    asked: RefCell<Vec<String>>,
}

impl Settings {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs, asked: RefCell::default() }
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        let mut asked = self.asked.borrow_mut();
        if !asked.iter().any(|k| k == key) {
            asked.push(key.to_string());
        }
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when unset; the error names the key and value.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|_| format!("setting `{key}`: cannot parse `{raw}`")),
        }
    }

    /// Fails on the first key nobody asked for, naming it and the keys that were asked for.
    pub(crate) fn refuse_unasked(&self) -> Result<(), String> {
        let asked = self.asked.borrow();
        match self.pairs.iter().find(|(k, _)| !asked.contains(k)) {
            None => Ok(()),
            Some((k, _)) if asked.is_empty() => Err(format!("unknown setting `{k}`: this validator takes no settings")),
            Some((k, _)) => Err(format!("unknown setting `{k}` (known: {})", asked.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_key_never_asked_for_is_refused_naming_the_known_ones() {
        let s = settings(&[("session_start", "3"), ("tolerance", "1")]);
        assert_eq!(s.parse_or("session_start", 1), Ok(3));
        assert_eq!(s.get("future_tolerance_ms"), None);
        let err = s.refuse_unasked().unwrap_err();
        assert_eq!(err, "unknown setting `tolerance` (known: session_start, future_tolerance_ms)");
    }

    #[test]
    fn a_validator_without_settings_refuses_any() {
        assert!(settings(&[]).refuse_unasked().is_ok());
        let err = settings(&[("x", "1")]).refuse_unasked().unwrap_err();
        assert_eq!(err, "unknown setting `x`: this validator takes no settings");
    }

    #[test]
    fn a_bad_value_names_the_key_and_value() {
        let err = settings(&[("n", "many")]).parse_or("n", 1u32).unwrap_err();
        assert_eq!(err, "setting `n`: cannot parse `many`");
    }
}
