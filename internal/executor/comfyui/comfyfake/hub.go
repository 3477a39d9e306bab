package comfyfake

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
)

// outboxSize bounds a socket's unsent messages; beyond it messages are
// dropped and logged (aiohttp would buffer, but a test that never reads is
// not worth unbounded memory).
const outboxSize = 4096

// wsConn is one websocket of /ws (§1.6).
type wsConn struct {
	sid  string
	c    *websocket.Conn
	out  chan []byte
	sent int // messages handed to this socket, for Faults.StallAfter
	// featureFlags is what the client sent in its first frame.
	featureFlags map[string]any
	closeOnce    sync.Once
	closed       chan struct{}
}

func (c *wsConn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		_ = c.c.CloseNow()
	})
}

// sendLocked is server.py send_json: to every socket when sid is nil, else
// to the socket registered under sid, if any (messages for a client with no
// open socket are dropped, §1.6). s.mu must be held.
func (s *Server) sendLocked(event string, data map[string]any, sid *string) {
	msg, err := json.Marshal(map[string]any{"type": event, "data": data})
	if err != nil {
		s.log.Error("comfyfake: encoding message", "type", event, "error", err)
		return
	}
	if sid == nil {
		for _, c := range s.sockets {
			s.deliverLocked(c, msg)
		}
		return
	}
	if c, ok := s.sockets[*sid]; ok {
		s.deliverLocked(c, msg)
	}
}

func (s *Server) deliverLocked(c *wsConn, msg []byte) {
	if s.faults.StallAfter > 0 && c.sent >= s.faults.StallAfter {
		return // Faults.StallAfter: the socket stays open and silent (§1.8).
	}
	c.sent++
	select {
	case c.out <- msg:
	default:
		s.log.Warn("comfyfake: websocket outbox full, message dropped", "sid", c.sid)
	}
}

// sendStatusLocked is server.py queue_updated: a status broadcast.
func (s *Server) sendStatusLocked() {
	s.sendLocked("status", map[string]any{"status": s.queueInfoLocked()}, nil)
}

// queueInfoLocked is get_queue_info: {"exec_info":{"queue_remaining":N}}.
func (s *Server) queueInfoLocked() map[string]any {
	n := 0
	if s.st != nil {
		n = s.st.remaining()
	}
	return map[string]any{"exec_info": map[string]any{"queue_remaining": n}}
}

// serveWS is server.py websocket_handler (§1.6): the socket is registered
// under its clientId (a new hex uuid when absent), replacing an older
// socket of the same id, and first gets a status with its sid; if its
// client's prompt is running, also executing{node} without prompt_id.
// After a feature_flags first frame the server answers with its own flags;
// other client frames are ignored. When a socket closes, whatever socket is
// registered under its sid is unregistered — in ComfyUI too, so closing a
// replaced socket late silences its replacement (server.py's finally
// block pops the sid).
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	sid := r.URL.Query().Get("clientId")
	if sid == "" {
		sid = strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	// The origin check is ComfyUI's own middleware (originAllowed).
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Warn("comfyfake: websocket accept", "error", err)
		return
	}
	conn := &wsConn{sid: sid, c: c, out: make(chan []byte, outboxSize), closed: make(chan struct{})}
	s.mu.Lock()
	if s.st == nil {
		s.mu.Unlock()
		conn.close()
		return
	}
	s.conns[conn] = struct{}{}
	s.sockets[sid] = conn
	s.sendLocked("status", map[string]any{"status": s.queueInfoLocked(), "sid": sid}, &sid)
	if cl := s.st.clientID(); cl != nil && *cl == sid && s.st.lastNode != nil {
		s.sendLocked("executing", map[string]any{"node": *s.st.lastNode}, &sid)
	}
	s.notifyLocked()
	s.mu.Unlock()

	go conn.writeLoop()
	defer func() {
		s.mu.Lock()
		if _, current := s.conns[conn]; current { // not from before a Kill
			delete(s.sockets, sid)
			delete(s.conns, conn)
		}
		s.notifyLocked()
		s.mu.Unlock()
		conn.close()
	}()
	first := true
	for {
		typ, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		var frame struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(data, &frame) != nil {
			continue
		}
		if first && frame.Type == "feature_flags" {
			s.mu.Lock()
			conn.featureFlags = frame.Data
			s.sendLocked("feature_flags", s.features(), &sid)
			s.mu.Unlock()
		}
		first = false
	}
}

// features is comfy_api/feature_flags.py get_server_features (§1.1 /features).
func (s *Server) features() map[string]any {
	return map[string]any{"supports_preview_metadata": true, "max_upload_size": s.opts.MaxUploadSize}
}

func (c *wsConn) writeLoop() {
	for {
		select {
		case <-c.closed:
			return
		case msg := <-c.out:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.c.Write(ctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				c.close()
				return
			}
		}
	}
}

// clientID is the running prompt's client, nil when idle or absent.
func (st *state) clientID() *string {
	if st.running == nil {
		return nil
	}
	return st.running.item.clientID()
}
