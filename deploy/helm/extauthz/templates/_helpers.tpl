{{- define "extauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "extauthz.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "extauthz.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "extauthz.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "extauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "extauthz.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "extauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: authorizer
app.kubernetes.io/part-of: betterauth-extauthz
{{- with omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* The helm test pod's labels: never the selector labels, or the Service, the
PDB and the NetworkPolicy would take the test pod for a replica. */ -}}
{{- define "extauthz.testLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "extauthz.name" . }}-policy-check
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: policy-check
app.kubernetes.io/part-of: betterauth-extauthz
{{- with omit .Values.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /*
GOMEMLIMIT below the memory limit, so that the GC works harder before the kernel
reclaims or kills. The limit also charges what GOMEMLIMIT does not count: the
binary's mapped pages (about 27 MiB), and the runtime's own slack. So it is the
limit less 32 MiB, at most 90% of it (large limits), at least half of it (tiny
ones). The limit is read as Kubernetes reads a quantity (decimal, with a binary or
decimal suffix or none); one in another form (an exponent) falls back to the whole
limit, through the downward API.
*/ -}}
{{- define "extauthz.gomemlimit" -}}
{{- $m := toString (dig "limits" "memory" "" .Values.resources) -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- $num := regexFind "^[0-9]+([.][0-9]+)?" $m -}}
{{- $unit := trimPrefix $num $m -}}
{{- $mi := 0 -}}
{{- if and $num (hasKey $units $unit) -}}
{{- $mi = floor (divf (mulf (float64 $num) (get $units $unit)) 1048576.0) | int -}}
{{- end -}}
{{- if gt $mi 0 -}}
- name: GOMEMLIMIT
  value: {{ printf "%dMiB" (max 1 (div $mi 2) (min (div (mul $mi 9) 10) (sub $mi 32))) | quote }}
{{- else -}}
- name: GOMEMLIMIT
  valueFrom: { resourceFieldRef: { resource: limits.memory, divisor: "1" } }
{{- end -}}
{{- end -}}

{{- define "extauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "extauthz.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "extauthz.configMapName" -}}
{{- default (printf "%s-policy" (include "extauthz.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "extauthz.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The policy document: policy.document, or the one betterAuth.url alone stands for. */}}
{{- define "extauthz.policy" -}}
{{- if .Values.policy.document -}}
{{- if not .Values.policy.document.issuers -}}
{{- fail "policy.document needs issuers (at least one)" -}}
{{- end -}}
{{- toYaml .Values.policy.document -}}
{{- else -}}
{{- if not .Values.betterAuth.url -}}
{{- fail "set betterAuth.url (or policy.document, or policy.existingConfigMap)" -}}
{{- end -}}
issuers:
  - betterAuthURL: {{ .Values.betterAuth.url | quote }}
default: authenticated
cors:
  allowPreflight: true
{{- end -}}
{{- end -}}

{{/* The Secret holding the serving certificate. */}}
{{- define "extauthz.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "extauthz.fullname" .) -}}
{{- else -}}
{{- required "tls.enabled needs tls.secretName or tls.certManager.enabled" .Values.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* The probes' and scrapers' scheme on the admin port. */}}
{{- define "extauthz.adminScheme" -}}
{{- if and .Values.tls.enabled .Values.tls.admin -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
