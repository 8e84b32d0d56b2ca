// Command schemacheck strictly decodes Kubernetes manifests (multi-document YAML on
// stdin) into the client-go types: unknown fields, wrong types and bad apiVersions fail.
// It needs no cluster and no network beyond the Go module proxy on first build.
//
//	helm template rel ../interlock | go run .
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

func main() {
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	ok, bad := 0, 0
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(2)
		}
		var probe map[string]any
		if err := sigsyaml.Unmarshal(doc, &probe); err != nil {
			fmt.Println("INVALID YAML:", err)
			bad++
			continue
		}
		if len(probe) == 0 {
			continue // a comment-only document (helm's "# Source:" headers)
		}
		if _, gvk, err := s.Decode(doc, nil, nil); err != nil {
			fmt.Printf("INVALID %v %v: %v\n", gvk, probe["metadata"], err)
			bad++
			continue
		}
		ok++
	}
	fmt.Printf("schemacheck: %d objects decoded strictly, %d invalid\n", ok, bad)
	if bad > 0 || ok == 0 {
		os.Exit(1)
	}
}
