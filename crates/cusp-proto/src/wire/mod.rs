//! Byte layouts of channel datagrams (`spec/channel.md` §2) and stream
//! segments (`spec/streams.md` §1).
