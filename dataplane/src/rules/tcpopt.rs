//! The `nft -j` operand of the TCP option matches: `{"tcp option": {"name": "maxseg"}}`
//! for `exists|missing` (the value `true`/`false`), `{"tcp option": {"name": "maxseg",
//! "field": "size"}}` for a field. The packet side is in `wire/tcpopt.rs`.

use super::Error;
use super::ast::Field;
use serde_json::{Value as J, json};

/// The operand of a TCP option field (`None`: not one).
pub(crate) fn field_json(f: Field) -> Option<J> {
    if !f.is_tcp_option() {
        return None;
    }
    Some(match f.words() {
        ("tcp option", name) => json!({"tcp option": {"name": name}}),
        (opt, field) => {
            let name = opt.trim_start_matches("tcp option ");
            json!({"tcp option": {"name": name, "field": field}})
        }
    })
}

/// Reads the operand [`field_json`] writes (`None`: not a `tcp option`).
pub(crate) fn read_field_json(left: &J, path: &str) -> Option<Result<Field, Error>> {
    let opt = left.get("tcp option")?;
    let name = opt.get("name").and_then(J::as_str).unwrap_or("");
    let found = match opt.get("field").and_then(J::as_str) {
        Some(field) => Field::from_words(&format!("tcp option {name}"), field)
            .ok_or_else(|| format!("tcp option {name} {field}")),
        None => Field::from_words("tcp option", name).ok_or_else(|| format!("tcp option {name}")),
    };
    Some(
        found.map_err(|what| {
            Error::json(path, format!("`{what}` is not supported by this appliance"))
        }),
    )
}
