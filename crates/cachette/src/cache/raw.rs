//! The serde side of [`RawBytes`](super::RawBytes): values that are byte
//! strings or strings pass through unchanged; anything else is refused.

use std::fmt;

use serde::de::value::SeqDeserializer;
use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// Why a value could not pass through the raw codec.
#[derive(Debug)]
pub(super) struct RawError(String);

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RawError {}

impl ser::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

impl de::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

fn refuse(what: &str) -> RawError {
    RawError(format!(
        "the raw bytes codec stores byte strings and strings only, not {what}"
    ))
}

pub(super) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RawError> {
    value.serialize(BytesSerializer)
}

pub(super) fn from_bytes<T: de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RawError> {
    T::deserialize(BytesDeserializer(bytes))
}

/// Generates the `Serializer` methods that refuse their input.
macro_rules! refuse_methods {
    ($($method:ident($($arg:ty),*) $what:literal;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<Self::Ok, RawError> {
                Err(refuse($what))
            }
        )*
    };
}

/// Serializes the whole value: a byte string, a string, or a sequence of
/// `u8` (`Vec<u8>` serializes as a sequence).
struct BytesSerializer;

/// Collects the elements of a sequence of `u8`.
struct ByteSeq(Vec<u8>);

/// Serializes one element of a sequence: only a `u8` is accepted.
struct ByteSerializer;

impl ser::Serializer for BytesSerializer {
    type Ok = Vec<u8>;
    type Error = RawError;
    type SerializeSeq = ByteSeq;
    type SerializeTuple = ByteSeq;
    type SerializeTupleStruct = Impossible<Vec<u8>, RawError>;
    type SerializeTupleVariant = Impossible<Vec<u8>, RawError>;
    type SerializeMap = Impossible<Vec<u8>, RawError>;
    type SerializeStruct = Impossible<Vec<u8>, RawError>;
    type SerializeStructVariant = Impossible<Vec<u8>, RawError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<u8>, RawError> {
        Ok(v.to_vec())
    }

    fn serialize_str(self, v: &str) -> Result<Vec<u8>, RawError> {
        Ok(v.as_bytes().to_vec())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ByteSeq, RawError> {
        Ok(ByteSeq(Vec::with_capacity(len.unwrap_or(0))))
    }

    fn serialize_tuple(self, len: usize) -> Result<ByteSeq, RawError> {
        Ok(ByteSeq(Vec::with_capacity(len)))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, RawError> {
        value.serialize(self)
    }

    refuse_methods! {
        serialize_bool(bool) "a bool";
        serialize_i8(i8) "an integer";
        serialize_i16(i16) "an integer";
        serialize_i32(i32) "an integer";
        serialize_i64(i64) "an integer";
        serialize_i128(i128) "an integer";
        serialize_u8(u8) "an integer";
        serialize_u16(u16) "an integer";
        serialize_u32(u32) "an integer";
        serialize_u64(u64) "an integer";
        serialize_u128(u128) "an integer";
        serialize_f32(f32) "a float";
        serialize_f64(f64) "a float";
        serialize_char(char) "a char";
        serialize_none() "an Option";
        serialize_unit() "a unit";
        serialize_unit_struct(&'static str) "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) "an enum";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, RawError> {
        Err(refuse("an Option"))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, RawError> {
        Err(refuse("an enum"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(refuse("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(refuse("an enum"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(refuse("a map"))
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(refuse("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(refuse("an enum"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for ByteSeq {
    type Ok = Vec<u8>;
    type Error = RawError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        self.0.push(value.serialize(ByteSerializer)?);
        Ok(())
    }

    fn end(self) -> Result<Vec<u8>, RawError> {
        Ok(self.0)
    }
}

impl ser::SerializeTuple for ByteSeq {
    type Ok = Vec<u8>;
    type Error = RawError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Vec<u8>, RawError> {
        Ok(self.0)
    }
}

impl ser::Serializer for ByteSerializer {
    type Ok = u8;
    type Error = RawError;
    type SerializeSeq = Impossible<u8, RawError>;
    type SerializeTuple = Impossible<u8, RawError>;
    type SerializeTupleStruct = Impossible<u8, RawError>;
    type SerializeTupleVariant = Impossible<u8, RawError>;
    type SerializeMap = Impossible<u8, RawError>;
    type SerializeStruct = Impossible<u8, RawError>;
    type SerializeStructVariant = Impossible<u8, RawError>;

    fn serialize_u8(self, v: u8) -> Result<u8, RawError> {
        Ok(v)
    }

    refuse_methods! {
        serialize_bool(bool) "a sequence of bools";
        serialize_i8(i8) "a sequence of i8";
        serialize_i16(i16) "a sequence of wider integers";
        serialize_i32(i32) "a sequence of wider integers";
        serialize_i64(i64) "a sequence of wider integers";
        serialize_i128(i128) "a sequence of wider integers";
        serialize_u16(u16) "a sequence of wider integers";
        serialize_u32(u32) "a sequence of wider integers";
        serialize_u64(u64) "a sequence of wider integers";
        serialize_u128(u128) "a sequence of wider integers";
        serialize_f32(f32) "a sequence of floats";
        serialize_f64(f64) "a sequence of floats";
        serialize_char(char) "a sequence of chars";
        serialize_str(&str) "a sequence of strings";
        serialize_bytes(&[u8]) "a sequence of byte strings";
        serialize_none() "a sequence of Options";
        serialize_unit() "a sequence of units";
        serialize_unit_struct(&'static str) "a sequence of unit structs";
        serialize_unit_variant(&'static str, u32, &'static str) "a sequence of enums";
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, RawError> {
        Err(refuse("a sequence of Options"))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<u8, RawError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(refuse("a sequence of enums"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RawError> {
        Err(refuse("nested sequences"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RawError> {
        Err(refuse("nested sequences"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(refuse("a sequence of tuple structs"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(refuse("a sequence of enums"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(refuse("a sequence of maps"))
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(refuse("a sequence of structs"))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(refuse("a sequence of enums"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Hands the stored bytes to whatever the target type asks for: bytes,
/// a sequence of `u8`, or a string (if they are UTF-8).
struct BytesDeserializer<'a>(&'a [u8]);

impl BytesDeserializer<'_> {
    fn text(&self) -> Result<&str, RawError> {
        std::str::from_utf8(self.0)
            .map_err(|e| RawError(format!("the stored bytes are not UTF-8: {e}")))
    }

    fn sequence<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        let mut seq = SeqDeserializer::<_, RawError>::new(self.0.iter().copied());
        let value = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(value)
    }
}

impl<'de> de::Deserializer<'de> for BytesDeserializer<'_> {
    type Error = RawError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_byte_buf(self.0.to_vec())
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_str(self.text()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_string(self.text()?.to_owned())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        self.sequence(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        self.sequence(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char option unit
        unit_struct tuple_struct map struct enum identifier ignored_any
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}
