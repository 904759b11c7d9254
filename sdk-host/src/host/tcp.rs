//! TCP connections through a network filter.

use super::lifecycle::{ContextId, Host};
use super::observe::TcpView;
use crate::error::Error;
use crate::model::{ContextKind, TcpStream};
use crate::types::{Action, StreamType};
use crate::types::{Callback, PeerType};

impl Host {
    /// Opens a TCP connection on the first plugin: `proxy_on_context_create`
    /// and `proxy_on_new_connection`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] or [`Error::VmFailed`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, action) = host.new_tcp_stream()?;
    /// assert_eq!(action, sdk_host::Action::Continue);
    /// host.send_downstream_data(connection, "PING\r\n", false)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new_tcp_stream(&mut self) -> Result<(ContextId, Action), Error> {
        let root = self
            .runtime
            .state_ref()
            .plugins
            .first()
            .map(|p| p.context_id)
            .ok_or(Error::Usage("the host has no plugin".to_string()))?;
        let id = self.next_context_id();
        let state = self.runtime.state();
        state.contexts.insert(id, ContextKind::Tcp);
        state.tcp.insert(
            id,
            TcpStream {
                root,
                ..TcpStream::default()
            },
        );
        self.invoke(Callback::ContextCreate, id, &[id, root])?;
        let action = self
            .invoke(Callback::NewConnection, id, &[id])?
            .map_or(Action::Continue, Action::from_u32);
        self.settle()?;
        Ok((id, action))
    }

    /// Data from the client: `proxy_on_downstream_data` with all data
    /// buffered so far. On `Continue` it goes upstream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_downstream_data(connection, "PING\r\n", false)?;
    /// assert_eq!(host.tcp(connection)?.to_upstream(), b"PING\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_downstream_data(
        &mut self,
        id: ContextId,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.tcp_data(id, true, data.as_ref(), end_of_stream)
    }

    /// Data from the server: `proxy_on_upstream_data`. On `Continue` it goes downstream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.send_upstream_data(connection, "PONG\r\n", false)?;
    /// assert_eq!(host.tcp(connection)?.to_downstream(), b"PONG\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_upstream_data(
        &mut self,
        id: ContextId,
        data: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        self.tcp_data(id, false, data.as_ref(), end_of_stream)
    }

    fn tcp_data(
        &mut self,
        id: ContextId,
        downstream: bool,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, Error> {
        let stream = self
            .runtime
            .state()
            .tcp
            .get_mut(&id)
            .ok_or(Error::NotFound {
                kind: "TCP stream",
                id,
            })?;
        let buffer = if downstream {
            &mut stream.downstream
        } else {
            &mut stream.upstream
        };
        buffer.extend_from_slice(data);
        let size = buffer.len() as u32;
        let callback = if downstream {
            Callback::DownstreamData
        } else {
            Callback::UpstreamData
        };
        let action = self
            .invoke(callback, id, &[id, size, u32::from(end_of_stream)])?
            .map_or(Action::Continue, Action::from_u32);
        if action == Action::Continue
            && let Some(stream) = self.runtime.state().tcp.get_mut(&id)
        {
            stream.flush(downstream);
        }
        self.settle()?;
        Ok(action)
    }

    pub(super) fn resume_tcp(&mut self, id: ContextId, kind: StreamType) -> Result<(), Error> {
        if let Some(stream) = self.runtime.state().tcp.get_mut(&id) {
            stream.flush(kind == StreamType::Downstream);
        }
        Ok(())
    }

    /// A peer closes the connection: `proxy_on_downstream_connection_close`
    /// or `proxy_on_upstream_connection_close`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Trap`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use sdk_host::PeerType;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// host.close_tcp(connection, true, PeerType::Remote)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_tcp(
        &mut self,
        id: ContextId,
        downstream: bool,
        peer: PeerType,
    ) -> Result<(), Error> {
        if !self.runtime.state_ref().tcp.contains_key(&id) {
            return Err(Error::NotFound {
                kind: "TCP stream",
                id,
            });
        }
        let callback = if downstream {
            Callback::DownstreamConnectionClose
        } else {
            Callback::UpstreamConnectionClose
        };
        self.invoke(callback, id, &[id, peer as u32])?;
        self.settle()
    }

    /// What a test can read about a TCP stream.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown stream.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let (connection, _) = host.new_tcp_stream()?;
    /// assert!(host.tcp(connection)?.to_upstream().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tcp(&self, id: ContextId) -> Result<TcpView<'_>, Error> {
        let stream = self.runtime.state_ref().tcp.get(&id);
        let not_found = Error::NotFound {
            kind: "TCP stream",
            id,
        };
        stream.map(|stream| TcpView { stream }).ok_or(not_found)
    }
}

impl TcpStream {
    fn flush(&mut self, downstream: bool) {
        if downstream {
            let data = std::mem::take(&mut self.downstream);
            self.to_upstream.extend(data);
        } else {
            let data = std::mem::take(&mut self.upstream);
            self.to_downstream.extend(data);
        }
    }
}
