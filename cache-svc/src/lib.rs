//! placeholder: built under issue 3
