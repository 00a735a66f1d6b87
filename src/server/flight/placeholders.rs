//! `?` parameters (ODBC/JDBC's and ADBC's `qmark` style) as DataFusion's positional `$1`, `$2`, ...
//!
//! The statement is tokenized with the SQL tokenizer DataFusion parses with, so a `?` inside a
//! string literal, a quoted identifier or a comment stays what it is; each bare `?` becomes `$n`,
//! numbered left to right from 1. Only the placeholders' bytes change: the rest of the text is
//! passed on exactly as the client wrote it.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The statement with every bare `?` replaced by `$1`, `$2`, ... (left to right). A statement
/// without `?` is returned unchanged; one that mixes `?` with `$n` is refused, since the two
/// numberings would collide. Text that does not tokenize is returned unchanged, for the parser to
/// report.
pub fn number_question_marks(sql: &str) -> Result<std::borrow::Cow<'_, str>> {
    if !sql.contains('?') {
        return Ok(sql.into());
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(sql.into());
    };
    let mut marks = vec![];
    let mut dollars = false;
    for t in &tokens {
        if let Token::Placeholder(p) = &t.token {
            if p == "?" {
                marks.push((t.span.start.line, t.span.start.column));
            } else if p.starts_with('$') {
                dollars = true;
            }
        }
    }
    if marks.is_empty() {
        return Ok(sql.into());
    }
    if dollars {
        return Err(DataFusionError::Plan(
            "the statement mixes ? and $n parameters: use one style".into(),
        ));
    }
    // Line/column (1-based, in characters) to byte offsets.
    let mut out = String::with_capacity(sql.len() + marks.len() * 2);
    let (mut line, mut column) = (1u64, 1u64);
    let mut next = marks.iter().peekable();
    let mut n = 0usize;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if next.peek() == Some(&&(line, column)) && ch == '?' {
            next.next();
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
            // `??` must not become `$1$2` (a dollar-quoted string to the tokenizer), nor `?x`
            // `$1x`: a mark followed by what could continue a placeholder is set apart.
            if chars
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '?'))
            {
                out.push(' ');
            }
        } else {
            out.push(ch);
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    if next.peek().is_some() {
        // The tokenizer's positions did not match the text (it never happens for valid UTF-8
        // input); refuse rather than send a statement with some placeholders left unnumbered.
        return Err(DataFusionError::Internal(
            "could not number the statement's ? parameters".into(),
        ));
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sql: &str) -> String {
        number_question_marks(sql).unwrap().into_owned()
    }

    #[test]
    fn numbers_bare_marks_left_to_right() {
        assert_eq!(
            n("SELECT count(*) FROM purchases WHERE amount > ?"),
            "SELECT count(*) FROM purchases WHERE amount > $1"
        );
        assert_eq!(n("SELECT ?,?, ? + 1"), "SELECT $1,$2, $3 + 1");
        assert_eq!(
            n("SELECT *\nFROM t\nWHERE a = ? AND\n  b IN (?, ?)"),
            "SELECT *\nFROM t\nWHERE a = $1 AND\n  b IN ($2, $3)"
        );
    }

    #[test]
    fn leaves_strings_identifiers_and_comments_alone() {
        assert_eq!(
            n("SELECT 'a?b', \"c?\", ? -- why?\n, ? /* or? */ FROM t"),
            "SELECT 'a?b', \"c?\", $1 -- why?\n, $2 /* or? */ FROM t"
        );
        assert_eq!(n("SELECT 'it''s ?', ?"), "SELECT 'it''s ?', $1");
        // Multi-byte characters before a mark: columns count characters, not bytes.
        assert_eq!(n("SELECT 'é€?', ? AS \"ü\""), "SELECT 'é€?', $1 AS \"ü\"");
        assert_eq!(n("SELECT 'no marks?'"), "SELECT 'no marks?'");
    }

    #[test]
    fn adjacent_marks_stay_apart() {
        assert_eq!(n("SELECT ??"), "SELECT $1 $2");
        assert_eq!(n("SELECT ?,?"), "SELECT $1,$2");
        assert_eq!(n("SELECT (?)"), "SELECT ($1)");
    }

    #[test]
    fn dollar_parameters_pass_and_mixing_is_refused() {
        assert_eq!(n("SELECT $1, $2"), "SELECT $1, $2");
        assert_eq!(n("SELECT $1, '?'"), "SELECT $1, '?'");
        let e = number_question_marks("SELECT $1, ?").unwrap_err();
        assert!(e.to_string().contains("mixes ? and $n"), "{e}");
    }

    #[test]
    fn untokenizable_text_is_left_to_the_parser() {
        assert_eq!(n("SELECT 'unterminated ?"), "SELECT 'unterminated ?");
    }
}
