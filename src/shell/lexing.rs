//! Where a statement ends in what is typed, by sqlparser's own tokenizer (the one DataFusion parses
//! with), so a `;` inside any string the parser knows (quoted, `E'\''`, `$$…$$`, `$tag$…$tag$`),
//! quoted identifier or comment (nested `/* /* */ */` included) never ends a statement early.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The text's tokens, or `None` while a string, quoted identifier or comment is still open (the
/// statement goes on in the next line). Any other tokenizer error counts as complete text: the
/// parser then reports it.
fn tokens(sql: &str) -> Option<Vec<Token>> {
    match Tokenizer::new(&GenericDialect {}, sql).tokenize() {
        Ok(tokens) => Some(tokens),
        Err(e) if is_unterminated(&e.message) => None,
        Err(_) => Some(vec![Token::SemiColon]),
    }
}

fn is_unterminated(message: &str) -> bool {
    message.starts_with("Unterminated") || message.contains("EOF")
}

fn is_blank(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_) | Token::SemiColon)
}

/// A statement is complete when, outside strings and comments, it ends with ';'.
pub fn statement_complete(sql: &str) -> bool {
    tokens(sql).is_some_and(|t| {
        t.iter()
            .rev()
            .find(|t| !matches!(t, Token::Whitespace(_)))
            .is_some_and(|t| *t == Token::SemiColon)
    })
}

/// Only blanks, comments and semicolons (an open comment or string is not blank).
pub(super) fn is_blank_sql(sql: &str) -> bool {
    tokens(sql).is_some_and(|t| t.iter().all(is_blank))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness() {
        assert!(statement_complete("SELECT 1;"));
        assert!(statement_complete("SELECT 1; -- done\n"));
        assert!(statement_complete("SELECT 'it''s;';"));
        assert!(!statement_complete("SELECT ';'"));
        assert!(!statement_complete("SELECT 'open;"));
        assert!(!statement_complete("SELECT 1 -- ;"));
        assert!(!statement_complete("SELECT 1 /* ; */"));
        assert!(!statement_complete("SELECT 1 /* ; "));
        assert!(!statement_complete("SELECT $$a;"));
        assert!(statement_complete("SELECT $$a;b$$;"));
        assert!(!statement_complete("SELECT $x$ ; $x$"));
        assert!(!statement_complete("SELECT E'\\'; "));
        assert!(statement_complete("SELECT E'\\';';"));
        assert!(!statement_complete("SELECT \"a;"));
        assert!(!statement_complete("SELECT 1 /* /* */ ; "));
        assert!(!statement_complete(""));
    }

    #[test]
    fn blank() {
        assert!(is_blank_sql("  -- only a comment\n ;"));
        assert!(is_blank_sql("/* c */ ;; "));
        assert!(is_blank_sql(""));
        assert!(!is_blank_sql("SELECT 1"));
        assert!(!is_blank_sql("/* open"));
        assert!(!is_blank_sql("'"));
    }
}
