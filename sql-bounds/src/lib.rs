//! The limits both sides of the sandbox put on a statement's shape before parsing it.
//!
//! sqlparser has taken time exponential in the length of some short inputs: a
//! 128-byte `SELECT a.not-b.not-b.…` takes the guest's parser (DataFusion 55's
//! sqlparser 0.62) three seconds, one more `.not-b` doubles it. The orchestrator's
//! policy parses with a newer sqlparser under a time budget; the guest parses again,
//! inside the sandbox, where the only bound is the run's deadline. So both sides run
//! this pass first: one look at each token, linear in the statement's length,
//! refusing sizes and shapes no real query has and on which a parser's work grows
//! fast. Each side tokenizes with its own sqlparser and hands this crate the tokens'
//! [`Class`]es, so the rules are written once.
//!
//! What is refused, and why:
//! - more than [`MAX_TOKENS`] tokens;
//! - brackets nested more than [`MAX_BRACKET_DEPTH`] deep;
//! - more than [`MAX_PREFIX_RUN`] prefix operators in a row (`NOT NOT …`, `- - …`,
//!   `CASE CASE …`);
//! - compound names of more than [`MAX_NAME_PARTS`] parts (`a.b.c…`);
//! - a name part after a period that is an unquoted prefix keyword (`a.not`,
//!   `a.case`): the shape of the exponential parses above. Such a field is written
//!   quoted (`a."not"`).

use protocol::{ErrorType, RunError};

/// Tokens a statement may have (whitespace and comments not counted).
pub const MAX_TOKENS: usize = 20_000;
/// How deep brackets (`(`, `[`, `{`) may nest.
pub const MAX_BRACKET_DEPTH: usize = 32;
/// Prefix operators (`NOT`, unary `-`, `CASE`, `INTERVAL`, ...) in a row, at most.
pub const MAX_PREFIX_RUN: usize = 10;
/// Parts of a compound name (`dataset.table.column.field`), at most.
pub const MAX_NAME_PARTS: usize = 8;

/// Keywords that start an expression without being one: chains of them are what
/// makes a parser try alternatives within alternatives.
const PREFIX_KEYWORDS: [&str; 9] = ["NOT", "CASE", "WHEN", "THEN", "ELSE", "INTERVAL", "EXISTS", "PRIOR", "IF"];

/// What this pass needs to know of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class<'a> {
    /// Whitespace and comments: not counted.
    Skip,
    /// `(`, `[`, `{`.
    Open,
    /// `)`, `]`, `}`.
    Close,
    /// `.`
    Period,
    /// A word (keyword or identifier) as written, and whether it was quoted.
    Word { value: &'a str, quoted: bool },
    /// A symbol that can start an expression: `-`, `+`, `~`, `!`, `@`.
    PrefixSymbol,
    /// Anything else.
    Other,
}

/// Checks the shape of a statement given its tokens' classes, in order.
pub fn precheck<'a>(tokens: impl IntoIterator<Item = Class<'a>>) -> Result<(), RunError> {
    let mut counted = 0;
    let mut depth = 0usize;
    let mut prefix_run = 0;
    let mut name_parts = 0;
    let mut after_period = false;
    for class in tokens.into_iter().filter(|c| *c != Class::Skip) {
        counted += 1;
        match class {
            Class::Open => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(refusal(
                        ErrorType::SqlParseError,
                        format!("the query is nested too deeply (more than {MAX_BRACKET_DEPTH} levels of brackets)"),
                    ));
                }
            }
            Class::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        let prefix_keyword = match class {
            Class::Word { value, quoted: false } => PREFIX_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(value)),
            _ => false,
        };
        if after_period && prefix_keyword {
            let Class::Word { value, .. } = class else { unreachable!("a prefix keyword is a word") };
            return Err(refusal(
                ErrorType::SqlNotAllowed,
                format!(
                    "the query has .{value}: a name that is the keyword {} must be quoted after a period: .\"{}\"",
                    value.to_uppercase(),
                    value.to_lowercase()
                ),
            ));
        }
        prefix_run = if prefix_keyword || class == Class::PrefixSymbol { prefix_run + 1 } else { 0 };
        if prefix_run > MAX_PREFIX_RUN {
            return Err(refusal(
                ErrorType::SqlNotAllowed,
                format!("the query has more than {MAX_PREFIX_RUN} operators in a row (NOT, -, CASE, ...)"),
            ));
        }
        match class {
            Class::Word { .. } if after_period => name_parts += 1,
            Class::Word { .. } => name_parts = 1,
            Class::Period => {}
            _ => name_parts = 0,
        }
        after_period = class == Class::Period;
        if name_parts > MAX_NAME_PARTS {
            return Err(refusal(
                ErrorType::SqlNotAllowed,
                format!("the query has a name of more than {MAX_NAME_PARTS} parts (a.b.c...)"),
            ));
        }
    }
    if counted > MAX_TOKENS {
        return Err(refusal(
            ErrorType::SqlNotAllowed,
            format!("the query has {counted} tokens; at most {MAX_TOKENS} are allowed"),
        ));
    }
    Ok(())
}

fn refusal(error_type: ErrorType, message: String) -> RunError {
    RunError { error_type, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(value: &str) -> Class<'_> {
        Class::Word { value, quoted: false }
    }

    fn refused(classes: Vec<Class<'_>>) -> Option<ErrorType> {
        precheck(classes).err().map(|e| e.error_type)
    }

    #[test]
    fn a_keyword_after_a_period_is_refused_unless_quoted() {
        assert_eq!(refused(vec![word("a"), Class::Period, word("not")]), Some(ErrorType::SqlNotAllowed));
        assert_eq!(refused(vec![word("a"), Class::Period, word("Case")]), Some(ErrorType::SqlNotAllowed));
        assert_eq!(refused(vec![word("a"), Class::Period, Class::Word { value: "not", quoted: true }]), None);
        assert_eq!(refused(vec![word("t"), Class::Period, word("date")]), None);
        assert_eq!(refused(vec![word("x"), Class::PrefixSymbol, word("not"), word("b")]), None);
    }

    #[test]
    fn limits_are_inclusive() {
        let open = vec![Class::Open; MAX_BRACKET_DEPTH];
        assert_eq!(refused(open.clone()), None);
        assert_eq!(refused([open, vec![Class::Open]].concat()), Some(ErrorType::SqlParseError));
        let nots = vec![word("NOT"); MAX_PREFIX_RUN];
        assert_eq!(refused(nots.clone()), None);
        assert_eq!(refused([nots, vec![Class::PrefixSymbol]].concat()), Some(ErrorType::SqlNotAllowed));
        let mut name = vec![word("a")];
        for _ in 1..MAX_NAME_PARTS {
            name.extend([Class::Period, word("b")]);
        }
        assert_eq!(refused(name.clone()), None);
        name.extend([Class::Period, word("c")]);
        assert_eq!(refused(name), Some(ErrorType::SqlNotAllowed));
        assert_eq!(refused(vec![Class::Other; MAX_TOKENS]), None);
        assert_eq!(refused(vec![Class::Other; MAX_TOKENS + 1]), Some(ErrorType::SqlNotAllowed));
        assert_eq!(refused(vec![Class::Skip; MAX_TOKENS + 1]), None);
    }
}
