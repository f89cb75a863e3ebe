//! Every public async method and every builder of pika says in its docs
//! what happens when its future is dropped or times out.

use std::path::Path;

/// The doc comment lines right above line `index` (attributes skipped).
fn docs_above(lines: &[&str], index: usize) -> String {
    let mut docs = Vec::new();
    for line in lines[..index].iter().rev() {
        let line = line.trim();
        if line.starts_with("///") {
            docs.push(line);
        } else if line.starts_with("#[") || line.is_empty() && docs.is_empty() {
            continue;
        } else {
            break;
        }
    }
    docs.join("\n")
}

#[test]
fn every_public_async_method_and_builder_documents_its_cancel_safety() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Builders: types given to `into_future!` or with their own
        // `impl IntoFuture for`.
        let builders: Vec<String> = lines
            .iter()
            .filter_map(|line| {
                let line = line.trim();
                let name = line
                    .strip_prefix("into_future!(")
                    .map(|rest| rest.split_whitespace().next().unwrap_or(""))
                    .or_else(|| {
                        let at = line.find("IntoFuture for ")?;
                        line[at + "IntoFuture for ".len()..]
                            .split(['<', ' '])
                            .next()
                    })?;
                (!name.is_empty() && name != "$builder").then(|| name.to_string())
            })
            .collect();
        for (index, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let item = if trimmed.starts_with("pub async fn ") {
                trimmed.to_string()
            } else if let Some(rest) = trimmed.strip_prefix("pub struct ") {
                let name = rest.split(['<', ' ', '{', '(', ';']).next().unwrap_or("");
                if !builders.iter().any(|b| b == name) {
                    continue;
                }
                trimmed.to_string()
            } else {
                continue;
            };
            checked += 1;
            if !docs_above(&lines, index).contains("# Cancel safety") {
                missing.push(format!(
                    "{}:{}: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    index + 1,
                    item
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} items: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "without a `# Cancel safety` section:\n{}",
        missing.join("\n")
    );
}
