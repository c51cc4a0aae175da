package secret

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestPasswordMatches(t *testing.T) {
	const pw = "Sup3rSecret!!"
	hash, err := HashPassword(pw)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("HashPassword = %q, want a PHC argon2id hash with kumo's parameters", hash)
	}
	if strings.Contains(hash, pw) {
		t.Errorf("HashPassword = %q, which contains the password", hash)
	}
	tests := []struct {
		pw   string
		want bool
	}{
		{pw, true},
		{"Sup3rSecret!", false},
		{"sup3rSecret!!", false},
		{pw + " ", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := PasswordMatches(hash, tt.pw); got != tt.want {
			t.Errorf("PasswordMatches(hash of %q, %q) = %v, want %v", pw, tt.pw, got, tt.want)
		}
	}

	empty, err := HashPassword("")
	if err != nil {
		t.Fatalf("HashPassword(\"\"): %v", err)
	}
	if !PasswordMatches(empty, "") || PasswordMatches(empty, "x") {
		t.Errorf("hash of the empty password: matches \"\" = %v, \"x\" = %v; want true, false",
			PasswordMatches(empty, ""), PasswordMatches(empty, "x"))
	}
}

func TestHashPasswordSalted(t *testing.T) {
	a, err := HashPassword("Sup3rSecret!!")
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashPassword("Sup3rSecret!!")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two hashes of one password are both %q, want different salts", a)
	}
	if !PasswordMatches(a, "Sup3rSecret!!") || !PasswordMatches(b, "Sup3rSecret!!") {
		t.Errorf("salted hashes %q and %q do not both match their password", a, b)
	}
}

func TestPasswordMatchesMalformed(t *testing.T) {
	const pw = "Sup3rSecret!!"
	good, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$") // "", argon2id, v=19, params, salt, key
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"plain text", pw},
		{"dollar only", "$"},
		{"too few parts", strings.Join(parts[:5], "$")},
		{"too many parts", good + "$extra"},
		{"text before", "x" + good},
		{"other algorithm", with(1, "argon2i")},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"other version", with(2, "v=16")},
		{"no version", with(2, "")},
		{"bad params", with(3, "m=x,t=2,p=1")},
		{"empty params", with(3, "")},
		{"zero time", with(3, "m=19456,t=0,p=1")},
		{"huge time", with(3, "m=19456,t=17,p=1")},
		{"zero threads", with(3, "m=19456,t=2,p=0")},
		{"threads overflow", with(3, "m=19456,t=2,p=256")},
		{"negative memory", with(3, "m=-1,t=2,p=1")},
		{"huge memory", with(3, "m=1048577,t=2,p=1")},
		{"bad salt", with(4, "!!!")},
		{"bad key", with(5, "!!!")},
		{"empty key", with(5, "")},
		{"other key", with(5, strings.Repeat("A", len(parts[5])))},
		{"short key", with(5, parts[5][:8])},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: PasswordMatches(%q) panicked: %v", tt.name, tt.hash, r)
				}
			}()
			if PasswordMatches(tt.hash, pw) {
				t.Errorf("%s: PasswordMatches(%q, %q) = true, want false", tt.name, tt.hash, pw)
			}
		}()
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	ids := map[string]bool{}
	for range 200 {
		token, id, hash, err := NewToken()
		if err != nil {
			t.Fatalf("NewToken: %v", err)
		}
		body, ok := strings.CutPrefix(token, TokenPrefix)
		if !ok {
			t.Fatalf("NewToken token = %q, want prefix %q", token, TokenPrefix)
		}
		if len(body) != 43 {
			t.Errorf("token body %q has %d characters, want 43", body, len(body))
		}
		if strings.Trim(body, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Errorf("token body %q has characters other than lower-case letters and digits", body)
		}
		if len(id) != 8 || !strings.HasPrefix(body, id) {
			t.Errorf("NewToken id = %q, want the first 8 characters of the body %q", id, body)
		}
		if want := HashToken(token); hash != want {
			t.Errorf("NewToken hash = %q, want HashToken(token) = %q", hash, want)
		}
		if seen[token] {
			t.Fatalf("NewToken returned %q twice", token)
		}
		seen[token] = true
		ids[id] = true
	}
	if len(ids) < 200 {
		t.Errorf("200 tokens have only %d distinct ids", len(ids))
	}
}

func TestHashToken(t *testing.T) {
	tests := []struct {
		token, want string
	}{
		// sha256 of the empty string and of "abc" (FIPS 180-2 test vectors).
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		if got := HashToken(tt.token); got != tt.want {
			t.Errorf("HashToken(%q) = %q, want %q", tt.token, got, tt.want)
		}
	}
	const tok = "kumo_abcdefgh"
	first := HashToken(tok)
	if again := HashToken(tok); again != first {
		t.Errorf("HashToken(%q) = %q, then %q; want it stable", tok, first, again)
	}
	if HashToken(tok) == HashToken(tok+"x") {
		t.Errorf("HashToken(%q) equals HashToken(%q)", tok, tok+"x")
	}
}

func TestRandomID(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range []int{1, 8, 16} {
		for range 50 {
			id := RandomID(n)
			b, err := hex.DecodeString(id)
			if err != nil || len(b) != n || strings.ToLower(id) != id {
				t.Errorf("RandomID(%d) = %q, want %d bytes of lower-case hex", n, id, n)
			}
			if n >= 8 && seen[id] {
				t.Errorf("RandomID(%d) returned %q twice", n, id)
			}
			seen[id] = true
		}
	}
}
