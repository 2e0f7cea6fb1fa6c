//! The bounds on parsing a query: the limits, the inexpensive pass over the tokens
//! before parsing ([`precheck`]), and a parser's error as a refusal. Also the first
//! word of a query, for the refusal of a statement that does not even parse.
//!
//! Uses `super::verdict` (for refusals) and nothing else of the policy module.

use protocol::{ErrorType, RunError};
use sqlparser::keywords::Keyword;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::Token;

use super::verdict::{not_allowed, refusal};

/// Tokens a query may have (whitespace and comments not counted).
pub const MAX_TOKENS: usize = 20_000;
/// How deep the parser may recurse (nested expressions, subqueries).
pub const RECURSION_LIMIT: usize = 64;
/// How deep brackets (`(`, `[`, `{`) may nest; checked before parsing.
pub const MAX_BRACKET_DEPTH: usize = 32;
/// Prefix operators (`NOT`, unary `-`, `CASE`, `INTERVAL`, ...) in a row, at most.
pub const MAX_PREFIX_RUN: usize = 10;
/// Parts of a compound name (`dataset.table.column.field`), at most.
pub const MAX_NAME_PARTS: usize = 8;

/// The inexpensive pass before parsing: one look at each token, refusing sizes and
/// shapes no real query has and on which a parser's work can grow fast.
pub(super) fn precheck<'a>(tokens: impl Iterator<Item = &'a Token>) -> Result<(), RunError> {
    let mut counted = 0;
    let mut depth = 0usize;
    let mut prefix_run = 0;
    let mut name_parts = 0;
    let mut after_period = false;
    for token in tokens.filter(|t| !matches!(t, Token::Whitespace(_))) {
        counted += 1;
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(refusal(
                        ErrorType::SqlParseError,
                        format!("the query is nested too deeply (more than {MAX_BRACKET_DEPTH} levels of brackets)"),
                    ));
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        prefix_run = if is_prefix_operator(token) { prefix_run + 1 } else { 0 };
        if prefix_run > MAX_PREFIX_RUN {
            return Err(not_allowed(format!(
                "the query has more than {MAX_PREFIX_RUN} operators in a row (NOT, -, CASE, ...)"
            )));
        }
        match token {
            Token::Word(_) if after_period => name_parts += 1,
            Token::Word(_) => name_parts = 1,
            Token::Period => {}
            _ => name_parts = 0,
        }
        after_period = matches!(token, Token::Period);
        if name_parts > MAX_NAME_PARTS {
            return Err(not_allowed(format!("the query has a name of more than {MAX_NAME_PARTS} parts (a.b.c...)")));
        }
    }
    if counted > MAX_TOKENS {
        return Err(not_allowed(format!("the query has {counted} tokens; at most {MAX_TOKENS} are allowed")));
    }
    Ok(())
}

/// Tokens that start an expression without being one: chains of them are what
/// makes a parser try alternatives within alternatives.
fn is_prefix_operator(token: &Token) -> bool {
    match token {
        Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark | Token::AtSign => true,
        Token::Word(word) if word.quote_style.is_none() => matches!(
            word.keyword,
            Keyword::NOT
                | Keyword::CASE
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::INTERVAL
                | Keyword::EXISTS
                | Keyword::PRIOR
                | Keyword::IF
        ),
        _ => false,
    }
}

/// The first word of the statement, upper-cased, if it starts with a word.
pub(super) fn leading_keyword<'a>(mut tokens: impl Iterator<Item = &'a Token>) -> Option<String> {
    match tokens.find(|t| !matches!(t, Token::Whitespace(_)))? {
        Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_uppercase()),
        _ => None,
    }
}

pub(super) fn parse_refusal(error: ParserError) -> RunError {
    let message = match error {
        ParserError::RecursionLimitExceeded => {
            format!("the query is nested too deeply (the parser's limit is {RECURSION_LIMIT} levels)")
        }
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
    };
    refusal(ErrorType::SqlParseError, message)
}
