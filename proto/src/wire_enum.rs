//! Typed enums for protocol values, with one fallible conversion each.

use thiserror::Error;

/// A number on the wire or the device that names no known value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("unknown {what} value {value:#x}")]
pub struct UnknownValue {
    /// The kind of value, e.g. "host operation".
    pub what: &'static str,
    pub value: u64,
}

/// Declares a `#[repr]` enum whose discriminants are wire values, with
/// `to_wire`, `ALL` and `TryFrom<repr>`. One macro keeps the value tables
/// (the facts) visible and the conversion code written once.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ty as $what:literal {
            $($(#[$vmeta:meta])* $variant:ident = $value:expr,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The value as it is written on the wire.
            #[must_use]
            pub const fn to_wire(self) -> $repr {
                self as $repr
            }
        }

        impl TryFrom<$repr> for $name {
            type Error = $crate::wire_enum::UnknownValue;

            fn try_from(value: $repr) -> Result<Self, Self::Error> {
                match value {
                    $(v if v == $value => Ok(Self::$variant),)+
                    _ => Err($crate::wire_enum::UnknownValue {
                        what: $what,
                        value: u64::from(value),
                    }),
                }
            }
        }
    };
}

pub(crate) use wire_enum;
