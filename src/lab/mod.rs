//! The dashboard's lab in one place, beside the server rather than inside it:
//! the teaching panel's captures ([`inspect`]), the network lab's impairments
//! ([`impairment`]) and the demo publisher ([`demo`]). The transports call in
//! at a few marked points; nothing here knows a transport's session.

pub mod demo;
pub mod impairment;
pub mod inspect;
