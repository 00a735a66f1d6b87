//! Limits every front end applies to a statement before planning it.
//!
//! DataFusion plans and optimises expressions recursively, so a long operator chain such as
//! `SELECT 1+1+...+1` becomes a tree whose depth is the number of operators, and a deep enough
//! tree overflows a thread's stack and aborts the whole process (every client of a server). The
//! SQL parser bounds nesting through parentheses, CASE and function calls (DataFusion's
//! `sql_parser.recursion_limit`, 50 by default), but it reads an operator chain in a loop, so a
//! chain is bounded here, from the tokens, before anything recursive runs; the threads that plan
//! and execute queries get a stack that every expression within the limit fits in
//! ([`THREAD_STACK_BYTES`]).

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The deepest expression a statement may have (operators in a chain, plus the chains of the
/// enclosing parenthesised levels). DataFusion's planning time grows with the square of the
/// depth (a 2,048-term sum: 4.8 s in a debug build, 1,000 terms 1.3 s), and DuckDB's and
/// ClickHouse's defaults stop at 1,000; 2,048 leaves room for generated OR-lists.
pub const MAX_EXPRESSION_DEPTH: usize = 2_048;

/// The stack of every thread that plans or executes queries (the runtime's workers and the
/// thread driving the shell or server): enough for [`MAX_EXPRESSION_DEPTH`] with a wide margin.
/// It is address space; only what a deep plan touches is ever backed by memory.
pub const THREAD_STACK_BYTES: usize = 256 << 20;

/// The longest statement a server accepts by default (`--max-statement-bytes`): 1 MiB, in the
/// spirit of ClickHouse's `max_query_size` (256 KiB). Planning time grows with the statement (a
/// 10 MB `IN` list of 1.5 million values took 27.5 s of a server's CPU), and a statement's text,
/// its tokens and its tree are all held in memory while it is planned.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 1 << 20;

/// Refuses a statement longer than `max` bytes, with a message naming both sizes.
pub fn check_statement_size(sql: &str, max: usize) -> std::result::Result<(), String> {
    if sql.len() > max {
        return Err(format!(
            "the statement is too long: {} bytes, and this server accepts at most {max} \
             (--max-statement-bytes); pass long lists of values as a table or a parameter",
            sql.len()
        ));
    }
    Ok(())
}

/// Refuses a statement whose expression depth (see [`MAX_EXPRESSION_DEPTH`]) is too large, with
/// a clear error, before it is parsed into a tree. Text that does not tokenize is left to the
/// parser, which reports it.
pub fn check_expression_depth(sql: &str) -> Result<()> {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return Ok(());
    };
    let depth = expression_depth(&tokens);
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(DataFusionError::Plan(format!(
            "the statement's expressions are too deep to plan ({depth} nested operators; the limit is \
             {MAX_EXPRESSION_DEPTH}): split a long chain such as a+b+c+... or x=1 OR x=2 OR ... into \
             parts, or use IN (...) for a list of values"
        )));
    }
    Ok(())
}

/// An upper estimate of the depth of the deepest expression tree the tokens parse into: for each
/// position, the operators chained so far at each open parenthesis level, plus the levels.
fn expression_depth(tokens: &[Token]) -> usize {
    // Operators chained at each open level; `sum` is their total.
    let mut chains: Vec<usize> = vec![0];
    let mut sum = 0usize;
    let mut deepest = 0usize;
    for t in tokens {
        let operator = match t {
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::DuckIntDiv
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::DoubleColon
            | Token::Tilde
            | Token::Arrow
            | Token::LongArrow => true,
            Token::Word(w) => match w.keyword {
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::XOR => true,
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::ORDER
                | Keyword::BY
                | Keyword::HAVING
                | Keyword::LIMIT
                | Keyword::ON
                | Keyword::JOIN
                | Keyword::UNION
                | Keyword::CASE
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END
                | Keyword::AS => {
                    // A new expression starts at this level.
                    let top = chains.last_mut().expect("the outer level");
                    sum -= *top;
                    *top = 0;
                    false
                }
                _ => false,
            },
            Token::Comma | Token::SemiColon => {
                let top = chains.last_mut().expect("the outer level");
                sum -= *top;
                *top = 0;
                false
            }
            Token::LParen | Token::LBracket => {
                chains.push(0);
                false
            }
            Token::RParen | Token::RBracket => {
                if chains.len() > 1 {
                    sum -= chains.pop().expect("an open level");
                }
                false
            }
            _ => false,
        };
        if operator {
            *chains.last_mut().expect("the outer level") += 1;
            sum += 1;
        }
        deepest = deepest.max(sum + chains.len() - 1);
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(sql: &str) -> usize {
        let dialect = GenericDialect {};
        expression_depth(&Tokenizer::new(&dialect, sql).tokenize().unwrap())
    }

    #[test]
    fn chains_count_and_separators_reset() {
        assert_eq!(depth("SELECT 1"), 0);
        assert_eq!(depth("SELECT 1 + 2 + 3"), 2);
        // Wide is not deep: each column is its own chain.
        let wide = (0..5000)
            .map(|i| format!("a + {i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(depth(&format!("SELECT {wide} FROM t")), 1);
        // Parenthesised levels add up.
        assert_eq!(depth("SELECT (1 + (2 + 3 + 4)) * 5"), 5);
        // Strings and comments hold no operators.
        assert_eq!(depth("SELECT '1+1+1' -- + + +\n"), 0);
        let chain = vec!["1"; 1000].join("+");
        assert_eq!(depth(&format!("SELECT {chain}")), 999);
    }

    #[test]
    fn long_statements_are_refused_with_both_sizes() {
        check_statement_size("SELECT 1", 8).unwrap();
        let e = check_statement_size("SELECT 10", 8).unwrap_err();
        assert!(e.contains("9 bytes") && e.contains("at most 8"), "{e}");
    }

    #[test]
    fn deep_statements_are_refused_with_the_limit_named() {
        let chain = vec!["1"; MAX_EXPRESSION_DEPTH + 2].join("+");
        let err = check_expression_depth(&format!("SELECT {chain}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too deep") && err.contains("2048"), "{err}");
        check_expression_depth(&format!("SELECT {}", vec!["1"; 1000].join("+"))).unwrap();
    }
}
