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
