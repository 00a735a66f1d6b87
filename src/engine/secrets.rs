//! Tokens and TLS material read from files, for `serve` and for the cluster's processes and
//! clients: one place that reads them and says what is wrong with a file.

use std::path::Path;

use datafusion::error::{DataFusionError, Result};

/// Reads an access token: the file's text, trimmed; an empty or unreadable file is an error.
pub fn read_token_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DataFusionError::Configuration(format!("cannot read token file '{}': {e}", path.display()))
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(DataFusionError::Configuration(format!(
            "token file '{}' is empty",
            path.display()
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DataFusionError::Configuration(format!(
            "token file '{}' must hold one token of printable ASCII characters without spaces",
            path.display()
        )));
    }
    Ok(token)
}

/// Reads a PEM file (a certificate, a key or a certificate authority) that must hold at least
/// one PEM block.
pub fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| {
        DataFusionError::Configuration(format!("cannot read TLS {what} '{}': {e}", path.display()))
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(DataFusionError::Configuration(format!(
            "TLS {what} '{}' holds no PEM block (-----BEGIN ...)",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, " s3cret \n").unwrap();
        assert_eq!(read_token_file(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(
            read_token_file(&f)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        std::fs::write(&f, "two words").unwrap();
        assert!(read_token_file(&f).is_err());
        assert!(read_token_file(&dir.path().join("none")).is_err());
        std::fs::write(&f, "not pem").unwrap();
        assert!(
            read_pem("certificate", &f)
                .unwrap_err()
                .to_string()
                .contains("no PEM")
        );
    }
}
