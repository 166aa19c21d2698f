//! Enums of named options (activation, loss, bias mode). One list gives each variant its name, and from
//! it come `name()`, `FromStr`, `Display`, `NAMES` (the accepted names, for error messages), and `ALL` and
//! `id()`, from which the GPU kernels' constants are generated.

macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every accepted name, comma-separated.
            #[allow(dead_code)] // not every enum is parsed from a name
            pub const NAMES: &'static str = named_enum!(@join $($text),+);
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The variant's index in declaration order: its id in the GPU kernels (`gpu::kernels`).
            pub fn id(self) -> u32 {
                self as u32
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
    (@join $first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

pub(crate) use named_enum;
