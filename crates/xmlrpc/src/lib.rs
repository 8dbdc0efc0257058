//! XML-RPC for shoal: values, calls, responses and faults, and nothing else.
//!
//! This crate does no I/O. It wraps the `dxr` crate's value types and XML mapping and adds what
//! a server that strangers talk to needs before any of that runs:
//!
//! - a pre-scan of every document with `quick-xml` that refuses a `<!DOCTYPE` (so no entity
//!   expansion and no external entities, ever), bounds the element nesting depth (`dxr` decodes
//!   recursively, so a deeply nested document would otherwise exhaust the stack), and requires
//!   UTF-8;
//! - short error messages: `dxr` puts the whole input into its parse errors, which must never be
//!   echoed back to a caller or into a log line;
//! - one rule for carrying file content ([`content_value`]): text as an XML-RPC string, as the
//!   seed's Python nodes expect, anything else as base64, so that binary data survives.
//!
//! Size limits are the caller's job (the HTTP layer bounds bodies before they reach here).

use std::borrow::Cow;

pub use dxr::Value;
use dxr::{FaultResponse, MethodCall, MethodResponse};
use quick_xml::events::Event;

/// Deepest element nesting accepted in a document. A call with a struct inside an array inside a
/// struct needs about 12; 64 leaves room for any honest caller.
pub const MAX_DEPTH: usize = 64;

/// A decoded method call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub params: Vec<Value>,
}

/// An XML-RPC fault: a numeric code and a message, as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault {code}: {message}")]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }
}

/// Why a document could not be decoded. Messages never quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the document is not UTF-8")]
    NotUtf8,
    #[error("the document has a DOCTYPE; entities and DTDs are refused")]
    Doctype,
    #[error("the document nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("malformed XML at byte {position}")]
    Malformed { position: u64 },
    #[error("not a valid XML-RPC {what}")]
    NotXmlRpc { what: &'static str },
}

/// What the pre-scan learned about a well-formed document.
struct Scan {
    /// The root's first child is `<fault>` (only meaningful for responses).
    is_fault: bool,
}

fn prescan(text: &str) -> Result<Scan, DecodeError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut is_fault = false;
    loop {
        let event = reader.read_event().map_err(|_| DecodeError::Malformed {
            position: reader.buffer_position(),
        })?;
        match event {
            Event::DocType(_) => return Err(DecodeError::Doctype),
            Event::Start(start) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                if depth == 2 && start.name().as_ref() == "fault" {
                    is_fault = true;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(Scan { is_fault })
}

fn as_text(body: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)
}

/// Decodes a `<methodCall>` document.
pub fn decode_call(body: &[u8]) -> Result<Call, DecodeError> {
    let text = as_text(body)?;
    prescan(text)?;
    let call = MethodCall::from_xml(text).map_err(|_| DecodeError::NotXmlRpc { what: "method call" })?;
    Ok(Call {
        method: call.name.into_owned(),
        params: call.params,
    })
}

/// Decodes a `<methodResponse>` document: the returned value, or the fault it carries.
pub fn decode_response(body: &[u8]) -> Result<Result<Value, Fault>, DecodeError> {
    let text = as_text(body)?;
    if prescan(text)?.is_fault {
        let fault = FaultResponse::from_xml(text).map_err(|_| DecodeError::NotXmlRpc { what: "fault response" })?;
        return Ok(Err(Fault::new(fault.fault.code(), fault.fault.string())));
    }
    let response = MethodResponse::from_xml(text).map_err(|_| DecodeError::NotXmlRpc { what: "method response" })?;
    Ok(Ok(response.value))
}

const PROLOG: &str = "<?xml version=\"1.0\"?>\n";

fn with_prolog(xml: Result<String, dxr::Error>) -> String {
    // Serialising our own values cannot fail: every Value maps to XML.
    let xml = xml.unwrap_or_else(|error| unreachable!("XML-RPC serialisation failed: {error}"));
    let mut out = String::with_capacity(PROLOG.len() + xml.len());
    out.push_str(PROLOG);
    out.push_str(&xml);
    out
}

/// Encodes a `<methodCall>` document.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    with_prolog(
        MethodCall {
            name: Cow::Borrowed(method),
            params: params.to_vec(),
        }
        .to_xml(),
    )
}

/// Encodes a successful `<methodResponse>` document.
pub fn encode_response(value: Value) -> String {
    with_prolog(MethodResponse { value }.to_xml())
}

/// Encodes a fault `<methodResponse>` document.
pub fn encode_fault(fault: &Fault) -> String {
    with_prolog(
        FaultResponse {
            fault: dxr::Fault::new(fault.code, fault.message.clone()),
        }
        .to_xml(),
    )
}

/// True when `bytes` can travel as an XML-RPC string and come back unchanged: valid UTF-8 with
/// only the characters XML 1.0 allows, and no carriage return (XML parsers turn `\r\n` into `\n`).
pub fn is_safe_text(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .chars()
            .all(|c| matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')),
        Err(_) => false,
    }
}

/// File content as an XML-RPC value: a string when it is safe text, base64 otherwise.
pub fn content_value(bytes: Vec<u8>) -> Value {
    if is_safe_text(&bytes) {
        // The check above proved the bytes are UTF-8.
        Value::String(String::from_utf8(bytes).unwrap_or_default())
    } else {
        Value::Base64(bytes)
    }
}

/// The bytes a content value carries (a string or base64), or `None` for any other type.
pub fn content_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::String(text) => Some(text.into_bytes()),
        Value::Base64(bytes) => Some(bytes),
        _ => None,
    }
}

/// Reads an integer parameter of either width.
pub fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(i64::from(*i)),
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

/// An unsigned quantity (a size, a count) as the narrowest integer type that holds it: `i4`
/// when it fits, so that strict peers read it, `i8` beyond.
pub fn size_value(n: u64) -> Value {
    match i32::try_from(n) {
        Ok(small) => Value::Integer(small),
        Err(_) => Value::Long(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>query</methodName>\n<params>\n<param>\n<value><string>a.txt</string></value>\n</param>\n<param>\n<value><array><data>\n<value><string>http://x:1</string></value>\n</data></array></value>\n</param>\n</params>\n</methodCall>\n";

    #[test]
    fn decodes_a_python_call() {
        let call = decode_call(PY_CALL.as_bytes()).unwrap();
        assert_eq!(call.method, "query");
        assert_eq!(call.params[0], Value::String("a.txt".into()));
        assert_eq!(call.params[1], Value::Array(vec![Value::String("http://x:1".into())]));
    }

    #[test]
    fn decodes_untyped_and_empty_params() {
        let call = decode_call(b"<methodCall><methodName>hello</methodName><params><param><value>u</value></param></params></methodCall>")
            .unwrap();
        assert_eq!(call.params, vec![Value::String("u".into())]);
        let call = decode_call(b"<?xml version='1.0'?>\n<methodCall>\n<methodName>list</methodName>\n<params>\n</params>\n</methodCall>\n")
            .unwrap();
        assert!(call.params.is_empty());
    }

    #[test]
    fn round_trips_calls_responses_and_faults() {
        let params = vec![Value::Integer(7), Value::Base64(vec![0, 1, 255]), Value::String("<&>".into())];
        let call = decode_call(encode_call("m", &params).as_bytes()).unwrap();
        assert_eq!(
            call,
            Call {
                method: "m".into(),
                params
            }
        );
        let value = decode_response(encode_response(Value::Long(1 << 40)).as_bytes()).unwrap();
        assert_eq!(value, Ok(Value::Long(1 << 40)));
        let fault = decode_response(encode_fault(&Fault::new(100, "nope")).as_bytes()).unwrap();
        assert_eq!(fault, Err(Fault::new(100, "nope")));
    }

    #[test]
    fn refuses_hostile_documents() {
        let check = |body: &str, expected: DecodeError| assert_eq!(decode_call(body.as_bytes()), Err(expected), "{body}");
        check(
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><methodCall><methodName>&b;</methodName></methodCall>",
            DecodeError::Doctype,
        );
        check(
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><methodCall><methodName>&e;</methodName></methodCall>",
            DecodeError::Doctype,
        );
        let deep = format!(
            "<methodCall><methodName>m</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(10_000),
            "</data></array></value>".repeat(10_000)
        );
        check(&deep, DecodeError::TooDeep);
        assert!(matches!(
            decode_call(b"<methodCall><methodName>m</methodName>"),
            Err(DecodeError::NotXmlRpc { .. }) | Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(decode_call(b"<a><b></a>"), Err(DecodeError::Malformed { .. })));
        assert_eq!(decode_call(b"\xff\xfe"), Err(DecodeError::NotUtf8));
        assert!(matches!(
            decode_call(b"<methodCall><methodName>m</methodName><params><param><value><int>x</int></value></param></params></methodCall>"),
            Err(DecodeError::NotXmlRpc { .. })
        ));
        assert!(
            decode_call(b"<methodCall><methodName>m</methodName><params><param><value>&undefined;</value></param></params></methodCall>")
                .is_err()
        );
    }

    #[test]
    fn content_is_text_only_when_it_survives_xml() {
        assert_eq!(content_value(b"hello\n".to_vec()), Value::String("hello\n".into()));
        for binary in [&b"a\r\nb"[..], b"\0", b"\xff", b"\x1b["] {
            assert_eq!(content_value(binary.to_vec()), Value::Base64(binary.to_vec()));
        }
        let value = decode_response(encode_response(content_value(vec![0, 13, 10, 200])).as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(content_bytes(value), Some(vec![0, 13, 10, 200]));
    }
}
