//! [`TableFilter`]: which tables of a many-table stream to keep, compared the way the
//! server compares table names.

/// How a server compares table names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameCase {
    /// Exact bytes: PostgreSQL (names as stored, after its folding of unquoted names),
    /// MySQL/MariaDB with `lower_case_table_names = 0` (Linux).
    #[default]
    Sensitive,
    /// Case-insensitive (Unicode lowercase on both sides): MySQL/MariaDB with
    /// `lower_case_table_names = 1` or `2` (Windows, macOS).
    Insensitive,
}

/// Include and exclude lists of qualified table names (`db.table`, `schema.table`),
/// each entry an exact name or a pattern with `*` (any run of characters) and `?` (one
/// character). A table is kept when it matches some include entry (or the include list
/// is empty) and no exclude entry. The case rule comes from the server
/// ([`TableFilter::with_case`]); connectors read it (`lower_case_table_names`) rather
/// than guess.
///
/// ```
/// use tributary::model::{NameCase, TableFilter};
/// let f = TableFilter::new().include(["shop.*"]).exclude(["shop.tmp_*"]);
/// assert!(f.matches("shop.orders"));
/// assert!(!f.matches("shop.tmp_load"));
/// assert!(!f.matches("Shop.orders"));
/// assert!(f.clone().with_case(NameCase::Insensitive).matches("Shop.Orders"));
/// assert!(TableFilter::new().matches("any.table"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    case: NameCase,
}

impl TableFilter {
    /// Every table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep only tables matching one of `names`.
    pub fn include<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.include.extend(names.into_iter().map(Into::into));
        self
    }

    /// Drop tables matching one of `names`.
    pub fn exclude<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude.extend(names.into_iter().map(Into::into));
        self
    }

    /// Compare names with the server's rule.
    pub fn with_case(mut self, case: NameCase) -> Self {
        self.case = case;
        self
    }

    /// The include list.
    pub fn included(&self) -> &[String] {
        &self.include
    }

    /// The exclude list.
    pub fn excluded(&self) -> &[String] {
        &self.exclude
    }

    /// Whether the qualified table `name` is kept.
    pub fn matches(&self, name: &str) -> bool {
        let fold = |s: &str| match self.case {
            NameCase::Sensitive => s.to_string(),
            NameCase::Insensitive => s.to_lowercase(),
        };
        let name = fold(name);
        let hit = |p: &String| glob(&fold(p), &name);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

/// `*` and `?` glob matching over characters, iterative with one backtrack point.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*", ""));
        assert!(!glob("a", "ab"));
        assert!(glob("*.orders", "shop.orders"));
        assert!(!glob("shop.order", "shop.orders"));
        assert!(glob("ü*", "übung"));
    }
}
