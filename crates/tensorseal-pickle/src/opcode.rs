//! The 68 opcodes of pickle protocols 0-5 (CPython `pickletools.opcodes`).

use std::fmt;

macro_rules! opcodes {
    ($( $(#[$doc:meta])* $name:ident = $byte:literal, $proto:literal, $text:literal; )*) => {
        /// One pickle opcode. The discriminant is the opcode byte.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum Opcode {
            $( $(#[$doc])* $name = $byte, )*
        }

        impl Opcode {
            /// Decodes an opcode byte; `None` for bytes that are not opcodes.
            #[inline]
            pub fn from_byte(byte: u8) -> Option<Opcode> {
                const TABLE: [Option<Opcode>; 256] = {
                    let mut table = [None; 256];
                    $( table[$byte as usize] = Some(Opcode::$name); )*
                    table
                };
                TABLE[byte as usize]
            }

            /// The name `pickletools` uses for this opcode (e.g. `BINUNICODE`).
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$name => $text, )*
                }
            }

            /// The protocol that introduced this opcode.
            pub fn protocol(self) -> u8 {
                match self {
                    $( Opcode::$name => $proto, )*
                }
            }

            /// Every opcode, in byte order of this table.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$name, )* ];
        }
    };
}

opcodes! {
    /// Push an int from a decimal line; `00`/`01` push False/True.
    Int = b'I', 0, "INT";
    /// Push a signed 4-byte little-endian int.
    BinInt = b'J', 1, "BININT";
    /// Push an unsigned 1-byte int.
    BinInt1 = b'K', 1, "BININT1";
    /// Push an unsigned 2-byte little-endian int.
    BinInt2 = b'M', 1, "BININT2";
    /// Push an int from a decimal line with an optional `L` suffix.
    Long = b'L', 0, "LONG";
    /// Push a two's-complement int of up to 255 bytes.
    Long1 = 0x8a, 2, "LONG1";
    /// Push a two's-complement int with a 4-byte length.
    Long4 = 0x8b, 2, "LONG4";
    /// Push a Python 2 str from a quoted, escaped line.
    String = b'S', 0, "STRING";
    /// Push a Python 2 str with a signed 4-byte length.
    BinString = b'T', 1, "BINSTRING";
    /// Push a Python 2 str with a 1-byte length.
    ShortBinString = b'U', 1, "SHORT_BINSTRING";
    /// Push bytes with a 4-byte length.
    BinBytes = b'B', 3, "BINBYTES";
    /// Push bytes with a 1-byte length.
    ShortBinBytes = b'C', 3, "SHORT_BINBYTES";
    /// Push bytes with an 8-byte length.
    BinBytes8 = 0x8e, 4, "BINBYTES8";
    /// Push a bytearray with an 8-byte length.
    ByteArray8 = 0x96, 5, "BYTEARRAY8";
    /// Push the next out-of-band buffer.
    NextBuffer = 0x97, 5, "NEXT_BUFFER";
    /// Make the buffer on top of the stack read-only.
    ReadonlyBuffer = 0x98, 5, "READONLY_BUFFER";
    /// Push None.
    None = b'N', 0, "NONE";
    /// Push True.
    NewTrue = 0x88, 2, "NEWTRUE";
    /// Push False.
    NewFalse = 0x89, 2, "NEWFALSE";
    /// Push a str from a raw-unicode-escape line.
    Unicode = b'V', 0, "UNICODE";
    /// Push a UTF-8 str with a 1-byte length.
    ShortBinUnicode = 0x8c, 4, "SHORT_BINUNICODE";
    /// Push a UTF-8 str with a 4-byte length.
    BinUnicode = b'X', 1, "BINUNICODE";
    /// Push a UTF-8 str with an 8-byte length.
    BinUnicode8 = 0x8d, 4, "BINUNICODE8";
    /// Push a float from a `repr(float)` line.
    Float = b'F', 0, "FLOAT";
    /// Push a big-endian IEEE-754 double.
    BinFloat = b'G', 1, "BINFLOAT";
    /// Push an empty list.
    EmptyList = b']', 1, "EMPTY_LIST";
    /// Append the top of the stack to the list below it.
    Append = b'a', 0, "APPEND";
    /// Extend the list below the mark with the items above it.
    Appends = b'e', 1, "APPENDS";
    /// Build a list from the items above the mark.
    List = b'l', 0, "LIST";
    /// Push an empty tuple.
    EmptyTuple = b')', 1, "EMPTY_TUPLE";
    /// Build a tuple from the items above the mark.
    Tuple = b't', 0, "TUPLE";
    /// Wrap the top item in a 1-tuple.
    Tuple1 = 0x85, 2, "TUPLE1";
    /// Wrap the top two items in a 2-tuple.
    Tuple2 = 0x86, 2, "TUPLE2";
    /// Wrap the top three items in a 3-tuple.
    Tuple3 = 0x87, 2, "TUPLE3";
    /// Push an empty dict.
    EmptyDict = b'}', 1, "EMPTY_DICT";
    /// Build a dict from the key/value items above the mark.
    Dict = b'd', 0, "DICT";
    /// Set one key/value pair in the dict below.
    SetItem = b's', 0, "SETITEM";
    /// Set the key/value pairs above the mark in the dict below it.
    SetItems = b'u', 1, "SETITEMS";
    /// Push an empty set.
    EmptySet = 0x8f, 4, "EMPTY_SET";
    /// Add the items above the mark to the set below it.
    AddItems = 0x90, 4, "ADDITEMS";
    /// Build a frozenset from the items above the mark.
    FrozenSet = 0x91, 4, "FROZENSET";
    /// Discard the top of the stack (or the mark above an empty frame).
    Pop = b'0', 0, "POP";
    /// Push the top of the stack again.
    Dup = b'2', 0, "DUP";
    /// Push a mark.
    Mark = b'(', 0, "MARK";
    /// Discard everything down to and including the topmost mark.
    PopMark = b'1', 1, "POP_MARK";
    /// Push a memo entry named by a decimal line.
    Get = b'g', 0, "GET";
    /// Push a memo entry named by a 1-byte index.
    BinGet = b'h', 1, "BINGET";
    /// Push a memo entry named by a 4-byte index.
    LongBinGet = b'j', 1, "LONG_BINGET";
    /// Store the top of the stack in the memo at a decimal index.
    Put = b'p', 0, "PUT";
    /// Store the top of the stack in the memo at a 1-byte index.
    BinPut = b'q', 1, "BINPUT";
    /// Store the top of the stack in the memo at a 4-byte index.
    LongBinPut = b'r', 1, "LONG_BINPUT";
    /// Store the top of the stack at the next memo index.
    Memoize = 0x94, 4, "MEMOIZE";
    /// Push a global looked up through the copyreg extension registry (1-byte code).
    Ext1 = 0x82, 2, "EXT1";
    /// Push a global looked up through the copyreg extension registry (2-byte code).
    Ext2 = 0x83, 2, "EXT2";
    /// Push a global looked up through the copyreg extension registry (4-byte code).
    Ext4 = 0x84, 2, "EXT4";
    /// Push a global named by two lines (module, qualified name).
    Global = b'c', 0, "GLOBAL";
    /// Push a global named by the two strings on top of the stack.
    StackGlobal = 0x93, 4, "STACK_GLOBAL";
    /// Call the callable below the argument tuple.
    Reduce = b'R', 0, "REDUCE";
    /// Set the state of the object below.
    Build = b'b', 0, "BUILD";
    /// Instantiate a class named by two lines with the items above the mark.
    Inst = b'i', 0, "INST";
    /// Instantiate the class above the mark with the items after it.
    Obj = b'o', 1, "OBJ";
    /// `cls.__new__(cls, *args)`.
    NewObj = 0x81, 2, "NEWOBJ";
    /// `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx = 0x92, 4, "NEWOBJ_EX";
    /// Set the protocol version.
    Proto = 0x80, 2, "PROTO";
    /// Stop; the top of the stack is the result.
    Stop = b'.', 0, "STOP";
    /// Start a frame of the given length.
    Frame = 0x95, 4, "FRAME";
    /// Push a persistent object named by an ASCII line.
    PersId = b'P', 0, "PERSID";
    /// Push a persistent object named by the value on top of the stack.
    BinPersId = b'Q', 1, "BINPERSID";
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_round_trips() {
        assert_eq!(Opcode::ALL.len(), 68);
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from_byte(op as u8), Some(op));
            assert!(op.protocol() <= 5);
        }
        let count = (0..=255u8)
            .filter(|&b| Opcode::from_byte(b).is_some())
            .count();
        assert_eq!(count, 68);
    }
}
