//! A browser-like HTTP client for the admin UI's tests and benchmark: keeps the cookies
//! it is given, never follows redirects, fills forms with the page's CSRF token.

/// A browser-like HTTP client without a browser: keeps the cookies it is given, never
/// follows redirects.
pub struct Client {
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: String,
    pub body: String,
    pub headers: ureq::http::HeaderMap,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Client {
            base: base.to_string(),
            cookies: Default::default(),
        }
    }

    fn send(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("Cookie", c.join("; "));
        }
        let body = match form {
            Some(fields) => {
                req = req.header("Content-Type", "application/x-www-form-urlencoded");
                fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                    .collect::<Vec<_>>()
                    .join("&")
            }
            None => String::new(),
        };
        let r = agent.run(req.body(body.into_bytes()).unwrap()).unwrap();
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        let headers = r.headers().clone();
        let body = String::from_utf8(crate::read_bytes(r)).unwrap();
        Page {
            status,
            location,
            body,
            headers,
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form))
    }

    /// The CSRF token of the page at `path` (the first hidden `csrf` field).
    pub fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path);
        hidden(&page.body, "csrf").unwrap_or_else(|| panic!("no csrf on {path}: {}", page.body))
    }

    /// Signs in through the form; the answer to the POST.
    pub fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let token = self.csrf("/login");
        self.post(
            "/login",
            &[
                ("user", user),
                ("password", password),
                ("csrf", &token),
                ("next", "/admin"),
            ],
        )
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first `<input type="hidden" name="NAME" value="...">`.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}
