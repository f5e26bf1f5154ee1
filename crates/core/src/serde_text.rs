//! Types that live in JSON as their text form (`"7.0.0"`,
//! `"0.6.0 <= v < 0.7.0"`, `"gren-lang/core"`, RFC 3339 times).

/// Implements `Serialize` through `Display` and `Deserialize` through
/// `$parse: fn(&str) -> Option<Self>`, naming `$what` in errors.
macro_rules! serde_as_text {
    ($type:ty, $parse:expr, $what:literal) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$type, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                let parse: fn(&str) -> Option<$type> = $parse;
                parse(&text).ok_or_else(|| serde::de::Error::custom(format!("invalid {} {text:?}", $what)))
            }
        }
    };
}

pub(crate) use serde_as_text;
