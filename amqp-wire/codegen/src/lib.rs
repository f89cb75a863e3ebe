//! Generates `amqp-wire/src/generated.rs` from the AMQP 0-9-1 JSON protocol
//! definition (`amqp-wire/spec/amqp-rabbitmq-0.9.1.json`).
//!
//! Run `cargo run -p amqp-codegen` from the workspace root to rewrite the
//! file; the test `generated_code_is_up_to_date` fails when the checked-in
//! file differs from what this generator produces.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The workspace root, found from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// Path of the protocol definition inside the repository.
pub fn spec_path() -> PathBuf {
    workspace_root().join("amqp-wire/spec/amqp-rabbitmq-0.9.1.json")
}

/// Path of the generated Rust file.
pub fn output_path() -> PathBuf {
    workspace_root().join("amqp-wire/src/generated.rs")
}

/// Reads the spec and returns the formatted generated source.
pub fn generate_from_spec_file() -> String {
    let text = std::fs::read_to_string(spec_path()).expect("read the protocol definition");
    let spec: Value = serde_json::from_str(&text).expect("the protocol definition is JSON");
    rustfmt(&generate(&spec))
}

/// Formats Rust source with the toolchain's rustfmt.
fn rustfmt(source: &str) -> String {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("rustfmt is installed with the toolchain");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(source.as_bytes())
        .expect("write to rustfmt");
    let output = child.wait_with_output().expect("rustfmt runs");
    assert!(
        output.status.success(),
        "rustfmt rejected the generated code"
    );
    String::from_utf8(output.stdout).expect("rustfmt prints UTF-8")
}

/// The Rust type, parser, encoder and length expression of one AMQP type.
struct TypeInfo {
    rust: &'static str,
    parse: &'static str,
    put: &'static str,
    /// Encoded size: `None` means variable (computed from the value).
    fixed_len: Option<usize>,
}

fn type_info(amqp: &str) -> TypeInfo {
    let (rust, parse, put, fixed_len) = match amqp {
        "octet" => ("u8", "parse::octet(i)", "buf.put_u8", Some(1)),
        "short" => ("u16", "parse::short(i)", "buf.put_u16", Some(2)),
        "long" => ("u32", "parse::long(i)", "buf.put_u32", Some(4)),
        "longlong" => ("u64", "parse::longlong(i)", "buf.put_u64", Some(8)),
        "timestamp" => ("u64", "parse::longlong(i)", "buf.put_u64", Some(8)),
        "shortstr" => (
            "ShortString",
            "parse::shortstr(src, i)",
            "put::shortstr",
            None,
        ),
        "longstr" => ("LongString", "parse::longstr(src, i)", "put::longstr", None),
        "table" => ("FieldTable", "parse::table(src, i, 0)", "put::table", None),
        other => panic!("unknown AMQP type {other}"),
    };
    TypeInfo {
        rust,
        parse,
        put,
        fixed_len,
    }
}

fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn field_name(name: &str) -> String {
    match name {
        "type" => "kind".to_string(),
        other => other.replace('-', "_"),
    }
}

fn screaming(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// Resolves an argument's AMQP type through the spec's domain table.
fn resolve_type<'a>(spec: &'a Value, argument: &'a Value) -> &'a str {
    if let Some(t) = argument.get("type").and_then(Value::as_str) {
        return t;
    }
    let domain = argument["domain"]
        .as_str()
        .expect("argument has a type or domain");
    spec["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .find(|d| d[0].as_str() == Some(domain))
        .and_then(|d| d[1].as_str())
        .unwrap_or_else(|| panic!("unknown domain {domain}"))
}

fn default_expr(amqp: &str, default: Option<&Value>) -> String {
    match (amqp, default) {
        ("bit", Some(Value::Bool(b))) => b.to_string(),
        ("bit", _) => "false".into(),
        ("shortstr", Some(Value::String(s))) => format!("ShortString::from_static({s:?})"),
        ("shortstr", _) => "ShortString::default()".into(),
        ("longstr", Some(Value::String(s))) => format!("LongString::from_static(b{s:?})"),
        ("longstr", _) => "LongString::default()".into(),
        ("table", _) => "FieldTable::new()".into(),
        (_, Some(Value::Number(n))) => n.to_string(),
        _ => "0".into(),
    }
}

struct Argument {
    amqp: String,
    field: String,
    wire_name: String,
    default: String,
}

struct MethodDef {
    class_name: String,
    class_id: u64,
    method_name: String,
    method_id: u64,
    rust: String,
    synchronous: bool,
    content: bool,
    arguments: Vec<Argument>,
}

fn methods(spec: &Value) -> Vec<MethodDef> {
    let mut out = Vec::new();
    for class in spec["classes"].as_array().expect("classes") {
        let class_name = class["name"].as_str().expect("class name");
        for method in class["methods"].as_array().expect("methods") {
            let method_name = method["name"].as_str().expect("method name");
            let arguments = method["arguments"]
                .as_array()
                .expect("arguments")
                .iter()
                .map(|a| {
                    let amqp = resolve_type(spec, a).to_string();
                    let wire_name = a["name"].as_str().expect("argument name").to_string();
                    Argument {
                        default: default_expr(&amqp, a.get("default-value")),
                        field: field_name(&wire_name),
                        amqp,
                        wire_name,
                    }
                })
                .collect();
            out.push(MethodDef {
                class_name: class_name.to_string(),
                class_id: class["id"].as_u64().expect("class id"),
                method_name: method_name.to_string(),
                method_id: method["id"].as_u64().expect("method id"),
                rust: pascal(class_name) + &pascal(method_name),
                synchronous: method.get("synchronous").and_then(Value::as_bool) == Some(true),
                content: method.get("content").and_then(Value::as_bool) == Some(true),
                arguments,
            });
        }
    }
    out
}

/// Groups consecutive `bit` arguments: the wire packs them into one octet.
enum Slot<'a> {
    Bits(Vec<&'a Argument>),
    Value(&'a Argument),
}

fn slots(arguments: &[Argument]) -> Vec<Slot<'_>> {
    let mut out: Vec<Slot<'_>> = Vec::new();
    for a in arguments {
        if a.amqp == "bit" {
            if let Some(Slot::Bits(bits)) = out.last_mut() {
                if bits.len() < 8 {
                    bits.push(a);
                    continue;
                }
            }
            out.push(Slot::Bits(vec![a]));
        } else {
            out.push(Slot::Value(a));
        }
    }
    out
}

/// Generates the whole file (unformatted).
pub fn generate(spec: &Value) -> String {
    let mut s = String::new();
    s.push_str(
        "// @generated by amqp-codegen from amqp-wire/spec/amqp-rabbitmq-0.9.1.json.\n\
         // DO NOT EDIT: change the generator (amqp-wire/codegen) and run\n\
         // `cargo run -p amqp-codegen` from the workspace root.\n\n\
         //! Method structs, the [`Method`] enum, [`BasicProperties`], reply codes\n\
         //! and protocol constants, generated from the AMQP 0-9-1 definition with\n\
         //! RabbitMQ's extensions.\n\n\
         use bytes::{BufMut, Bytes};\n\n\
         use crate::error::Problem;\n\
         use crate::parse::{self, PResult};\n\
         use crate::put;\n\
         use crate::types::{FieldTable, LongString, ShortString};\n\n",
    );
    generate_constants(spec, &mut s);
    let methods = methods(spec);
    for m in &methods {
        generate_method_struct(m, &mut s);
    }
    generate_method_enum(&methods, &mut s);
    generate_properties(spec, &mut s);
    s
}

fn generate_constants(spec: &Value, s: &mut String) {
    s.push_str("/// Frame types, sizes and the frame-end octet from the protocol definition.\npub mod constants {\n");
    let mut codes = Vec::new();
    for c in spec["constants"].as_array().expect("constants") {
        let name = c["name"].as_str().expect("constant name");
        let value = c["value"].as_u64().expect("constant value");
        match c.get("class").and_then(Value::as_str) {
            Some(class) => codes.push((name, value, class)),
            None if name == "REPLY-SUCCESS" => codes.push((name, value, "success")),
            None => {
                let ty = if name == "FRAME-MIN-SIZE" {
                    "u32"
                } else {
                    "u8"
                };
                let _ = writeln!(
                    s,
                    "/// `{name}` = {value}.\npub const {}: {ty} = {value};",
                    screaming(name)
                );
            }
        }
    }
    s.push_str("}\n\n");

    s.push_str(
        "/// A reply code of `connection.close`, `channel.close` or `basic.return`.\n\
         ///\n\
         /// An open newtype: a broker may send codes this crate does not name.\n\
         /// Soft errors close only the channel, hard errors the connection.\n\
         ///\n\
         /// ```\n\
         /// use amqp_wire::ReplyCode;\n\
         /// assert!(ReplyCode::NOT_FOUND.is_soft_error());\n\
         /// assert!(ReplyCode::CONNECTION_FORCED.is_hard_error());\n\
         /// assert_eq!(ReplyCode(404).name(), Some(\"NOT_FOUND\"));\n\
         /// ```\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\n\
         pub struct ReplyCode(pub u16);\n\n\
         impl ReplyCode {\n",
    );
    for (name, value, class) in &codes {
        let _ = writeln!(
            s,
            "/// `{name}` ({value}, {class}).\npub const {}: ReplyCode = ReplyCode({value});",
            screaming(name)
        );
    }
    s.push_str(
        "\n/// The spec's name of this code, if it has one.\npub fn name(self) -> Option<&'static str> {\nmatch self.0 {\n",
    );
    for (name, value, _) in &codes {
        let _ = writeln!(s, "{value} => Some({:?}),", screaming(name));
    }
    s.push_str("_ => None,\n}\n}\n\n");
    s.push_str("/// True for codes the spec classes as soft errors: they close only the channel.\npub fn is_soft_error(self) -> bool {\nmatches!(self.0, ");
    let soft: Vec<String> = codes
        .iter()
        .filter(|c| c.2 == "soft-error")
        .map(|c| c.1.to_string())
        .collect();
    s.push_str(&soft.join(" | "));
    s.push_str(")\n}\n\n");
    s.push_str("/// True for codes the spec classes as hard errors: they close the connection.\n///\n/// Codes the spec does not name count as hard: a peer that sends one\n/// on `connection.close` ends the connection either way.\npub fn is_hard_error(self) -> bool {\nself.0 != 200 && !self.is_soft_error()\n}\n}\n\n");
}

fn generate_method_struct(m: &MethodDef, s: &mut String) {
    let _ = writeln!(
        s,
        "/// `{}.{}` (class {}, method {}){}{}.",
        m.class_name,
        m.method_name,
        m.class_id,
        m.method_id,
        if m.synchronous {
            ", synchronous: the peer answers it"
        } else {
            ""
        },
        if m.content {
            ", followed by a content header and body frames"
        } else {
            ""
        },
    );
    let derive_default = m.arguments.is_empty();
    if derive_default {
        s.push_str("#[derive(Debug, Clone, PartialEq, Default)]\n");
    } else {
        s.push_str("#[derive(Debug, Clone, PartialEq)]\n");
    }
    let _ = writeln!(s, "pub struct {} {{", m.rust);
    for a in &m.arguments {
        let rust = if a.amqp == "bit" {
            "bool"
        } else {
            type_info(&a.amqp).rust
        };
        let _ = writeln!(
            s,
            "/// `{}` ({}).\npub {}: {},",
            a.wire_name, a.amqp, a.field, rust
        );
    }
    s.push_str("}\n\n");

    if !derive_default {
        let _ = writeln!(
            s,
            "impl Default for {} {{\n/// The spec's default values.\nfn default() -> Self {{\nSelf {{",
            m.rust
        );
        for a in &m.arguments {
            let _ = writeln!(s, "{}: {},", a.field, a.default);
        }
        s.push_str("}\n}\n}\n\n");
    }

    let _ = writeln!(s, "impl {} {{", m.rust);
    let _ = writeln!(
        s,
        "/// Class id on the wire.\npub const CLASS_ID: u16 = {};\n/// Method id on the wire.\npub const METHOD_ID: u16 = {};\n/// The spec's name, `class.method`.\npub const NAME: &'static str = \"{}.{}\";\n",
        m.class_id, m.method_id, m.class_name, m.method_name
    );

    // decode
    let slots = slots(&m.arguments);
    let input = if m.arguments.is_empty() {
        "_src"
    } else {
        "src"
    };
    let uses_src = m
        .arguments
        .iter()
        .any(|a| matches!(a.amqp.as_str(), "shortstr" | "longstr" | "table"));
    let src_name = if uses_src { "src" } else { "_src" };
    let _ = input;
    let _ = writeln!(
        s,
        "pub(crate) fn decode_arguments<'a>({src_name}: &Bytes, i: &'a [u8]) -> PResult<'a, Self> {{"
    );
    for slot in &slots {
        match slot {
            Slot::Bits(bits) => {
                s.push_str("let (i, bits) = parse::octet(i)?;\n");
                for (n, a) in bits.iter().enumerate() {
                    let _ = writeln!(s, "let {} = bits & {:#04x} != 0;", a.field, 1u8 << n);
                }
            }
            Slot::Value(a) => {
                let _ = writeln!(s, "let (i, {}) = {}?;", a.field, type_info(&a.amqp).parse);
            }
        }
    }
    let _ = write!(s, "Ok((i, Self {{");
    for a in &m.arguments {
        let _ = write!(s, "{},", a.field);
    }
    s.push_str("}))\n}\n\n");

    // encode
    let buf = if m.arguments.is_empty() {
        "_buf"
    } else {
        "buf"
    };
    let _ = writeln!(
        s,
        "pub(crate) fn encode_arguments<B: BufMut>(&self, {buf}: &mut B) {{"
    );
    for slot in &slots {
        match slot {
            Slot::Bits(bits) => {
                s.push_str("buf.put_u8(");
                let parts: Vec<String> = bits
                    .iter()
                    .enumerate()
                    .map(|(n, a)| match n {
                        0 => format!("u8::from(self.{})", a.field),
                        _ => format!("(u8::from(self.{}) << {n})", a.field),
                    })
                    .collect();
                s.push_str(&parts.join(" | "));
                s.push_str(");\n");
            }
            Slot::Value(a) => {
                let info = type_info(&a.amqp);
                if info.fixed_len.is_some() {
                    let _ = writeln!(s, "{}(self.{});", info.put, a.field);
                } else {
                    let _ = writeln!(s, "{}(buf, &self.{});", info.put, a.field);
                }
            }
        }
    }
    s.push_str("}\n\n");

    // length
    let mut fixed = 0usize;
    let mut variable = Vec::new();
    for slot in &slots {
        match slot {
            Slot::Bits(_) => fixed += 1,
            Slot::Value(a) => match type_info(&a.amqp).fixed_len {
                Some(n) => fixed += n,
                None => {
                    // Length prefix (fixed) plus the value's bytes.
                    let (prefix, len) = match a.amqp.as_str() {
                        "shortstr" => (1, "len"),
                        "longstr" => (4, "len"),
                        _ => (4, "encoded_len"),
                    };
                    fixed += prefix;
                    variable.push(format!("self.{}.{len}()", a.field));
                }
            },
        }
    }
    let mut expr = fixed.to_string();
    for v in variable {
        expr.push_str(" + ");
        expr.push_str(&v);
    }
    let _ = writeln!(
        s,
        "pub(crate) fn arguments_len(&self) -> usize {{\n{expr}\n}}\n}}\n\nimpl From<{0}> for Method {{\nfn from(method: {0}) -> Self {{\nMethod::{0}(method)\n}}\n}}\n",
        m.rust
    );
}

fn generate_method_enum(methods: &[MethodDef], s: &mut String) {
    s.push_str(
        "/// Every method of AMQP 0-9-1 with RabbitMQ's extensions.\n\
         ///\n\
         /// ```\n\
         /// use amqp_wire::{Method, BasicAck};\n\
         /// let ack: Method = BasicAck { delivery_tag: 7, multiple: false }.into();\n\
         /// assert_eq!(ack.name(), \"basic.ack\");\n\
         /// assert_eq!((ack.class_id(), ack.method_id()), (60, 80));\n\
         /// ```\n\
         #[derive(Debug, Clone, PartialEq)]\n\
         #[non_exhaustive]\n\
         pub enum Method {\n",
    );
    for m in methods {
        let _ = writeln!(
            s,
            "/// `{}.{}`.\n{}({}),",
            m.class_name, m.method_name, m.rust, m.rust
        );
    }
    s.push_str("}\n\nimpl Method {\n");

    let accessor =
        |s: &mut String, doc: &str, name: &str, ty: &str, f: &dyn Fn(&MethodDef) -> String| {
            let _ = writeln!(
                s,
                "/// {doc}\npub fn {name}(&self) -> {ty} {{\nmatch self {{"
            );
            for m in methods {
                let _ = writeln!(s, "Method::{}(_) => {},", m.rust, f(m));
            }
            s.push_str("}\n}\n\n");
        };
    accessor(s, "Class id on the wire.", "class_id", "u16", &|m| {
        m.class_id.to_string()
    });
    accessor(s, "Method id on the wire.", "method_id", "u16", &|m| {
        m.method_id.to_string()
    });
    accessor(
        s,
        "The spec's name, such as `\"basic.deliver\"`.",
        "name",
        "&'static str",
        &|m| format!("\"{}.{}\"", m.class_name, m.method_name),
    );
    accessor(
        s,
        "True when the peer answers this method with a reply method.",
        "is_synchronous",
        "bool",
        &|m| m.synchronous.to_string(),
    );
    accessor(
        s,
        "True when a content header and body frames follow this method.",
        "has_content",
        "bool",
        &|m| m.content.to_string(),
    );

    s.push_str(
        "/// Length of the encoded method payload: class id, method id and arguments.\n\
         pub fn encoded_len(&self) -> usize {\n4 + match self {\n",
    );
    for m in methods {
        let _ = writeln!(s, "Method::{}(m) => m.arguments_len(),", m.rust);
    }
    s.push_str("}\n}\n\n");

    s.push_str(
        "/// Writes the method payload (class id, method id, arguments) into `buf`.\n\
         pub fn encode<B: BufMut>(&self, buf: &mut B) {\n\
         buf.put_u16(self.class_id());\n\
         buf.put_u16(self.method_id());\n\
         match self {\n",
    );
    for m in methods {
        let _ = writeln!(s, "Method::{}(m) => m.encode_arguments(buf),", m.rust);
    }
    s.push_str("}\n}\n\n");

    s.push_str("/// The spec's name of the method `(class_id, method_id)`, if it exists.\npub fn name_of(class_id: u16, method_id: u16) -> Option<&'static str> {\nmatch (class_id, method_id) {\n");
    for m in methods {
        let _ = writeln!(
            s,
            "({}, {}) => Some(\"{}.{}\"),",
            m.class_id, m.method_id, m.class_name, m.method_name
        );
    }
    s.push_str("_ => None,\n}\n}\n\n");

    s.push_str(
        "/// Decodes the arguments of the method `(class_id, method_id)` from `i`,\n\
         /// a slice of `src`: strings and tables keep slices of `src`.\n\
         pub(crate) fn decode_arguments<'a>(class_id: u16, method_id: u16, src: &Bytes, i: &'a [u8]) -> PResult<'a, Method> {\n\
         match (class_id, method_id) {\n",
    );
    for m in methods {
        let _ = writeln!(
            s,
            "({}, {}) => {}::decode_arguments(src, i).map(|(i, m)| (i, Method::{}(m))),",
            m.class_id, m.method_id, m.rust, m.rust
        );
    }
    s.push_str(
        "_ => Err(parse::fail(i, Problem::UnknownMethod { class_id, method_id })),\n}\n}\n}\n\n",
    );
}

fn generate_properties(spec: &Value, s: &mut String) {
    let basic = spec["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .find(|c| c["name"] == "basic")
        .expect("basic class");
    let props: Vec<(String, String, String)> = basic["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .map(|p| {
            let wire = p["name"].as_str().expect("property name").to_string();
            let amqp = resolve_type(spec, p).to_string();
            (field_name(&wire), wire, amqp)
        })
        .collect();
    assert!(props.len() <= 15, "one property-flags word holds 15 flags");

    s.push_str(
        "/// The 14 properties of a `basic` content header, each optional.\n\
         ///\n\
         /// On the wire a property-flags word says which are present (bit 15\n\
         /// for the first, `content-type`, down to bit 2 for `cluster-id`).\n\
         ///\n\
         /// ```\n\
         /// use amqp_wire::{BasicProperties, ShortString};\n\
         /// let props = BasicProperties {\n\
         ///     content_type: Some(ShortString::from_static(\"application/json\")),\n\
         ///     delivery_mode: Some(2),\n\
         ///     ..Default::default()\n\
         /// };\n\
         /// assert_eq!(props.flags(), 0x8000 | 0x1000);\n\
         /// ```\n\
         #[derive(Debug, Clone, PartialEq, Default)]\n\
         pub struct BasicProperties {\n",
    );
    for (field, wire, amqp) in &props {
        let _ = writeln!(
            s,
            "/// `{wire}` ({amqp}).\npub {field}: Option<{}>,",
            type_info(amqp).rust
        );
    }
    s.push_str("}\n\nimpl BasicProperties {\n");
    s.push_str("/// The property-flags word for the properties that are set.\npub fn flags(&self) -> u16 {\nlet mut flags = 0u16;\n");
    for (n, (field, _, _)) in props.iter().enumerate() {
        let _ = writeln!(
            s,
            "if self.{field}.is_some() {{ flags |= {:#06x}; }}",
            1u16 << (15 - n)
        );
    }
    s.push_str("flags\n}\n\n");
    let _ = writeln!(
        s,
        "/// Flag bits that name a property (the others must be zero on the wire).\npub const KNOWN_FLAGS: u16 = {:#06x};\n",
        props
            .iter()
            .enumerate()
            .fold(0u16, |acc, (n, _)| acc | (1 << (15 - n)))
    );

    s.push_str("/// Encoded length of the flags word and the present properties.\npub fn encoded_len(&self) -> usize {\nlet mut len = 2;\n");
    for (field, _, amqp) in &props {
        let add = match type_info(amqp).fixed_len {
            Some(n) => n.to_string(),
            None => match amqp.as_str() {
                "shortstr" => "1 + v.len()".into(),
                "longstr" => "4 + v.len()".into(),
                _ => "4 + v.encoded_len()".into(),
            },
        };
        let binding = if type_info(amqp).fixed_len.is_some() {
            "_v"
        } else {
            "v"
        };
        let _ = writeln!(
            s,
            "if let Some({binding}) = &self.{field} {{ len += {add}; }}"
        );
    }
    s.push_str("len\n}\n\n");

    s.push_str("/// Writes the flags word and the present properties.\npub fn encode<B: BufMut>(&self, buf: &mut B) {\nbuf.put_u16(self.flags());\n");
    for (field, _, amqp) in &props {
        let info = type_info(amqp);
        if info.fixed_len.is_some() {
            let _ = writeln!(s, "if let Some(v) = self.{field} {{ {}(v); }}", info.put);
        } else {
            let _ = writeln!(
                s,
                "if let Some(v) = &self.{field} {{ {}(buf, v); }}",
                info.put
            );
        }
    }
    s.push_str("}\n\n");

    s.push_str(
        "/// Decodes the flags word and the properties it announces.\n\
         pub(crate) fn decode<'a>(src: &Bytes, i: &'a [u8]) -> PResult<'a, Self> {\n\
         let (i, flags) = parse::short(i)?;\n\
         if flags & !Self::KNOWN_FLAGS != 0 {\n\
         return Err(parse::fail(i, Problem::UnknownPropertyFlags { flags }));\n\
         }\n\
         let mut props = Self::default();\n",
    );
    for (n, (field, _, amqp)) in props.iter().enumerate() {
        let _ = writeln!(
            s,
            "let i = if flags & {:#06x} != 0 {{ let (i, v) = {}?; props.{field} = Some(v); i }} else {{ i }};",
            1u16 << (15 - n),
            type_info(amqp).parse
        );
    }
    s.push_str("Ok((i, props))\n}\n}\n");
}
