// A minimal chat page on streamchat's AI SDK API (docs/ai-sdk.md): useChat with resume, the
// chat restored from the server, a stop that the server hears. Build: `npm run build`;
// serve: `npm run serve` (http://127.0.0.1:8001/?api=http://127.0.0.1:8000&uid=1, with
// STREAMCHAT_CORS_ORIGINS=http://127.0.0.1:8001 on the server).
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
const API = params.get('api') ?? 'http://127.0.0.1:8000';
// Without keys (a server on loopback) the user is named in the URL; with keys, pass `key`.
const USER = params.get('uid') ? `?uid=${encodeURIComponent(params.get('uid'))}` : '';
const HEADERS = params.get('key') ? { Authorization: `Bearer ${params.get('key')}` } : {};
// The chat's id is the page's: from the URL, or the last one this browser used.
const CHAT =
  params.get('chat') ?? localStorage.getItem('streamchat-chat') ?? `chat-${Date.now().toString(36)}`;
localStorage.setItem('streamchat-chat', CHAT);
const CHAT_URL = `${API}/api/ui/chat`;

const text = (message) =>
  message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');

function Chat({ initialMessages }) {
  const [input, setInput] = useState('');
  const { messages, sendMessage, status, stop } = useChat({
    id: CHAT,
    messages: initialMessages,
    resume: true, // a reload mid-answer reconnects: GET /api/ui/chat/{id}/stream
    transport: new DefaultChatTransport({ api: `${CHAT_URL}${USER}`, headers: HEADERS }),
  });

  async function stopAnswer() {
    await fetch(`${CHAT_URL}/${CHAT}/stop${USER}`, { method: 'POST', headers: HEADERS });
    await stop();
  }

  return (
    <main>
      <h1>streamchat × useChat</h1>
      <ol id="messages">
        {messages.map((message) => (
          <li key={message.id} data-role={message.role}>
            <b>{message.role}</b> <span className="text">{text(message)}</span>
          </li>
        ))}
      </ol>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (input.trim()) sendMessage({ text: input });
          setInput('');
        }}
      >
        <input id="input" value={input} onChange={(event) => setInput(event.target.value)} />
        <button type="submit" disabled={status !== 'ready'}>Send</button>
        {(status === 'streaming' || status === 'submitted') && (
          <button type="button" id="stop" onClick={stopAnswer}>Stop</button>
        )}
      </form>
      <p id="status">{status}</p>
    </main>
  );
}

function App() {
  const [initialMessages, setInitialMessages] = useState(null);
  useEffect(() => {
    fetch(`${CHAT_URL}/${CHAT}${USER}`, { headers: HEADERS })
      .then((response) => (response.ok ? response.json() : []))
      .then(setInitialMessages, () => setInitialMessages([]));
  }, []);
  return initialMessages === null ? <p>…</p> : <Chat initialMessages={initialMessages} />;
}

createRoot(document.getElementById('root')).render(<App />);
