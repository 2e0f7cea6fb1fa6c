//! The bounds on parsing a query: the limits, the inexpensive pass over the tokens
//! before parsing ([`precheck`]), and a parser's error as a refusal. Also the first
//! word of a query, for the refusal of a statement that does not even parse.
//!
//! Uses `super::verdict` (for refusals) and nothing else of the policy module.

use protocol::{ErrorType, RunError};
use sql_bounds::Class;
use sqlparser::parser::ParserError;
use sqlparser::tokenizer::Token;

use super::verdict::refusal;

pub use sql_bounds::{MAX_BRACKET_DEPTH, MAX_NAME_PARTS, MAX_PREFIX_RUN, MAX_TOKENS};

/// How deep the parser may recurse (nested expressions, subqueries).
pub const RECURSION_LIMIT: usize = 64;

/// The inexpensive pass before parsing: one look at each token, refusing sizes and
/// shapes no real query has and on which a parser's work can grow fast. The rules
/// are `sql_bounds`', the same the guest applies before its own parse.
pub(super) fn precheck<'a>(tokens: impl Iterator<Item = &'a Token>) -> Result<(), RunError> {
    sql_bounds::precheck(tokens.map(class))
}

fn class(token: &Token) -> Class<'_> {
    match token {
        Token::Whitespace(_) => Class::Skip,
        Token::LParen | Token::LBracket | Token::LBrace => Class::Open,
        Token::RParen | Token::RBracket | Token::RBrace => Class::Close,
        Token::Period => Class::Period,
        Token::Word(word) => Class::Word { value: &word.value, quoted: word.quote_style.is_some() },
        Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark | Token::AtSign => Class::PrefixSymbol,
        _ => Class::Other,
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
