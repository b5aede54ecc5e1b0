package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// orderedObject is a JSON object that keeps its keys in file order, so that
// rewriting one member of a hand-written schema leaves the rest of it as it was
// (encoding/json's maps sort keys).
type orderedObject struct {
	keys   []string
	values map[string]json.RawMessage
}

func (o *orderedObject) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	o.values = map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, dup := o.values[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.values[k] = v
	}
	return nil
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(bytes.TrimSpace(kb))
		b.WriteByte(':')
		b.Write(o.values[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o *orderedObject) set(k string, v json.RawMessage) {
	if _, ok := o.values[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.values[k] = v
}

func (o *orderedObject) delete(k string) {
	if _, ok := o.values[k]; !ok {
		return
	}
	delete(o.values, k)
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
}

// setPath replaces the member at path, each step an object.
func (o *orderedObject) setPath(path []string, v json.RawMessage) error {
	if len(path) == 1 {
		o.set(path[0], v)
		return nil
	}
	raw, ok := o.values[path[0]]
	if !ok {
		return fmt.Errorf("no %q", path[0])
	}
	var child orderedObject
	if err := json.Unmarshal(raw, &child); err != nil {
		return fmt.Errorf("%s: %w", path[0], err)
	}
	if err := child.setPath(path[1:], v); err != nil {
		return fmt.Errorf("%s.%w", path[0], err)
	}
	b, err := child.MarshalJSON()
	if err != nil {
		return err
	}
	o.values[path[0]] = b
	return nil
}
