//! Versions (`7.0.0`) and ranges (`7.0.0 <= v < 8.0.0`) as the Gren compiler
//! reads them.

use crate::serde_text::serde_as_text;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl Version {
    pub const fn new(major: u16, minor: u16, patch: u16) -> Version {
        Version { major, minor, patch }
    }

    /// `X.Y.Z`: decimal parts without leading zeros, each at most 65535, and
    /// nothing else (no pre-release or build suffix).
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.');
        let mut next = || -> Option<u16> {
            let part = parts.next()?;
            let plain = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            if !plain || (part.len() > 1 && part.starts_with('0')) || part.len() > 5 {
                return None;
            }
            part.parse().ok()
        };
        let version = Version::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(version)
    }

    /// The versions that may follow a package's existing versions, as
    /// `gren package bump` allows: the next major after the highest version,
    /// the next minor after the newest release of each major, and the next
    /// patch after the newest release of each major.minor. Taken numbers
    /// (revoked ones included) are left out.
    pub fn successors(taken: &[Version]) -> Vec<Version> {
        let mut sorted = taken.to_vec();
        sorted.sort();
        let mut allowed = Vec::new();
        if let Some(highest) = sorted.last()
            && let Some(major) = highest.major.checked_add(1)
        {
            allowed.push(Version::new(major, 0, 0));
        }
        // Sorted ascending, so the last version seen of a group is its newest.
        for (index, version) in sorted.iter().enumerate() {
            let next = sorted.get(index + 1);
            if next.is_none_or(|next| next.major != version.major)
                && let Some(minor) = version.minor.checked_add(1)
            {
                allowed.push(Version::new(version.major, minor, 0));
            }
            if next.is_none_or(|next| (next.major, next.minor) != (version.major, version.minor))
                && let Some(patch) = version.patch.checked_add(1)
            {
                allowed.push(Version::new(version.major, version.minor, patch));
            }
        }
        allowed.retain(|version| sorted.binary_search(version).is_err());
        allowed.sort();
        allowed.dedup();
        allowed
    }

    /// Whether `self` is one of [`Version::successors`] of the versions
    /// that `key` gives of `sorted` (ascending by version): found by binary
    /// search, so a publish checks it in the same time at 10 versions as at
    /// 10,000.
    pub fn follows<T>(self, sorted: &[T], key: impl Fn(&T) -> Version) -> bool {
        // The newest version whose (major, minor, patch) is at most `bound`
        // by the parts `part` keeps.
        let newest = |part: fn(Version) -> (u16, u16, u16), bound: Version| {
            let index = sorted.partition_point(|item| part(key(item)) <= part(bound));
            index.checked_sub(1).map(|index| key(&sorted[index]))
        };
        let major = |version: Version| (version.major, 0, 0);
        let minor = |version: Version| (version.major, version.minor, 0);
        let taken = sorted.binary_search_by_key(&self, &key).is_ok();
        let Some(highest) = sorted.last().map(&key) else {
            return false;
        };
        let next_major = highest.major.checked_add(1).map(|major| Version::new(major, 0, 0));
        let next_minor = newest(major, self)
            .filter(|newest| newest.major == self.major)
            .and_then(|newest| Some(Version::new(newest.major, newest.minor.checked_add(1)?, 0)));
        let next_patch = newest(minor, self)
            .filter(|newest| (newest.major, newest.minor) == (self.major, self.minor))
            .and_then(|newest| Some(Version::new(newest.major, newest.minor, newest.patch.checked_add(1)?)));
        !taken && [next_major, next_minor, next_patch].contains(&Some(self))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

serde_as_text!(Version, Version::parse, "version");
serde_as_text!(Range, Range::parse, "range");

/// `A.B.C <= v < D.E.F`, each operator `<` or `<=`, lower below upper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lower: Version,
    pub lower_inclusive: bool,
    pub upper: Version,
    pub upper_inclusive: bool,
}

impl Range {
    pub fn parse(text: &str) -> Option<Range> {
        let parts: Vec<&str> = text.split(' ').collect();
        let [lower, lower_op, "v", upper_op, upper] = parts.as_slice() else {
            return None;
        };
        let inclusive = |op: &str| match op {
            "<" => Some(false),
            "<=" => Some(true),
            _ => None,
        };
        let range = Range {
            lower: Version::parse(lower)?,
            lower_inclusive: inclusive(lower_op)?,
            upper: Version::parse(upper)?,
            upper_inclusive: inclusive(upper_op)?,
        };
        (range.lower < range.upper).then_some(range)
    }

    pub fn contains(&self, version: Version) -> bool {
        let above = if self.lower_inclusive {
            self.lower <= version
        } else {
            self.lower < version
        };
        let below = if self.upper_inclusive {
            version <= self.upper
        } else {
            version < self.upper
        };
        above && below
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |inclusive| if inclusive { "<=" } else { "<" };
        write!(
            f,
            "{} {} v {} {}",
            self.lower,
            op(self.lower_inclusive),
            op(self.upper_inclusive),
            self.upper
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(v("7.0.0"), Version::new(7, 0, 0));
        assert_eq!(v("65535.0.10"), Version::new(65535, 0, 10));
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.00.0",
            "1.0.0-beta",
            "1.0.0+b",
            "65536.0.0",
            "a.b.c",
            " 1.0.0",
            "-1.0.0",
            "1..0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
        assert!(v("1.10.0") > v("1.9.0"));
    }

    #[test]
    fn ranges_parse_exactly_and_contain() {
        let range = Range::parse("0.6.0 <= v < 0.7.0").unwrap();
        assert!(range.contains(v("0.6.0")) && range.contains(v("0.6.3")));
        assert!(!range.contains(v("0.7.0")) && !range.contains(v("0.5.9")));
        let exclusive = Range::parse("1.0.0 < v <= 2.0.0").unwrap();
        assert!(!exclusive.contains(v("1.0.0")) && exclusive.contains(v("2.0.0")));
        assert_eq!(exclusive.to_string(), "1.0.0 < v <= 2.0.0");
        for bad in [
            "1.0.0 <= v < 1.0.0",
            "2.0.0 <= v < 1.0.0",
            "1.0.0 <=v < 2.0.0",
            "1.0.0  <= v < 2.0.0",
            "1.0.0 >= v < 2.0.0",
            "1.0.0 <= x < 2.0.0",
            "1.0.0 <= v",
            "local:../x",
        ] {
            assert_eq!(Range::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn follows_answers_as_successors_does() {
        // Every version of small parts, against sets of them.
        let all: Vec<Version> = (0..3)
            .flat_map(|major| (0..3).flat_map(move |minor| (0..3).map(move |patch| Version::new(major, minor, patch))))
            .collect();
        for mask in [
            0b0u32,
            0b1,
            0b101,
            0b1_0000_0011,
            0b1101_0110_1011,
            0b111_0000_1000_0001_0010,
            u32::MAX >> 5,
        ] {
            let taken: Vec<Version> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, v)| *v)
                .collect();
            let allowed = Version::successors(&taken);
            for candidate in all
                .iter()
                .copied()
                .chain([Version::new(3, 0, 0), Version::new(1, 3, 0)])
            {
                assert_eq!(
                    candidate.follows(&taken, |v| *v),
                    allowed.contains(&candidate),
                    "{candidate} after {taken:?}"
                );
            }
        }
        assert!(!Version::new(0, 0, 0).follows(&[Version::new(65535, 65535, 65535)], |v| *v));
    }

    #[test]
    fn successors_follow_gren_package_bump() {
        assert_eq!(Version::successors(&[]), vec![]);
        let taken = [v("1.0.0"), v("1.1.0"), v("1.1.1"), v("2.0.0")];
        assert_eq!(
            Version::successors(&taken),
            vec![v("1.0.1"), v("1.1.2"), v("1.2.0"), v("2.0.1"), v("2.1.0"), v("3.0.0")]
        );
        // An old line may get a patch or minor; a hole below the newest may not be filled.
        assert!(!Version::successors(&taken).contains(&v("1.0.2")));
        assert_eq!(Version::successors(&[v("65535.65535.65535")]), vec![]);
    }
}
