package config

// Secret is a string that prints, formats and marshals as "<secret>", so a
// configuration struct can be logged whole without leaking it. Use Reveal
// where the value itself is needed.
type Secret string

const redacted = "<secret>"

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString keeps %#v redacted too.
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler (used by zerolog and others).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }
