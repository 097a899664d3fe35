package encoding_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/seam"
)

// Decide: what a deadline does with Seam's answer.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p := encoding.Policy{ConfirmTimeout: time.Minute, MaxAge: 15 * time.Minute}
	pending := encoding.Record{EncodingID: "e", WorkspaceID: "ws", AcsCredentialID: "c", Status: encoding.StatusPending,
		RequestedAt: t0, Deadline: t0.Add(time.Minute)}
	number := "1234"
	asked := func(st string) encoding.Answer {
		return encoding.Answer{Asked: true, Attempt: seam.ActionAttempt{Status: st}}
	}
	testCases := []struct {
		Name     string
		Rec      encoding.Record
		Answer   encoding.Answer
		Now      time.Duration
		Action   encoding.Action
		Status   encoding.Status
		ErrType  string
		Deadline time.Duration
	}{
		{Name: "final", Rec: func() encoding.Record { r := pending; r.Status = encoding.StatusIssued; return r }(), Now: 2 * time.Minute, Action: encoding.Done},
		{Name: "not due", Rec: pending, Now: 30 * time.Second, Action: encoding.Wait},
		{Name: "success", Rec: pending, Answer: encoding.Answer{Asked: true, Attempt: seam.ActionAttempt{Status: seam.AttemptSuccess}, Card: encoding.Card{Number: number}},
			Now: time.Minute, Action: encoding.Settle, Status: encoding.StatusIssued},
		{Name: "error", Rec: pending, Answer: encoding.Answer{Asked: true, Attempt: seam.ActionAttempt{Status: seam.AttemptError, Error: &seam.ActionAttemptError{Type: "no_credential_on_encoder", Message: "m"}}},
			Now: time.Minute, Action: encoding.Settle, Status: encoding.StatusFailed, ErrType: "no_credential_on_encoder"},
		{Name: "still pending: extended, doubling", Rec: pending, Answer: asked(seam.AttemptPending), Now: time.Minute, Action: encoding.Extend, Deadline: 2 * time.Minute},
		{Name: "still pending at the maximum age: expired", Rec: func() encoding.Record { r := pending; r.Deadline = t0.Add(15 * time.Minute); return r }(),
			Answer: asked(seam.AttemptPending), Now: 15 * time.Minute, Action: encoding.Settle, Status: encoding.StatusExpired, ErrType: encoding.ErrorExpired},
		{Name: "extension capped at the maximum age", Rec: func() encoding.Record { r := pending; r.Deadline = t0.Add(10 * time.Minute); return r }(),
			Answer: asked(seam.AttemptPending), Now: 10 * time.Minute, Action: encoding.Extend, Deadline: 15 * time.Minute},
		{Name: "track-only: extended, no Seam call", Rec: pending, Answer: encoding.Answer{}, Now: time.Minute, Action: encoding.Extend, Deadline: 2 * time.Minute},
		{Name: "track-only at the maximum age: expired", Rec: func() encoding.Record { r := pending; r.Deadline = t0.Add(15 * time.Minute); return r }(),
			Answer: encoding.Answer{}, Now: 15 * time.Minute, Action: encoding.Settle, Status: encoding.StatusExpired, ErrType: encoding.ErrorExpired},
		{Name: "Seam down: ask again", Rec: pending, Answer: encoding.Answer{Asked: true, Err: errors.New("timeout")}, Now: time.Minute, Action: encoding.AskAgain},
		{Name: "Seam down past the maximum age: expired", Rec: pending, Answer: encoding.Answer{Asked: true, Err: errors.New("timeout")}, Now: 16 * time.Minute,
			Action: encoding.Settle, Status: encoding.StatusExpired, ErrType: encoding.ErrorExpired},
		{Name: "Seam does not know the attempt: failed with its error", Rec: pending,
			Answer: encoding.Answer{Asked: true, Refused: &seam.APIError{Status: 404, Type: "action_attempt_not_found", Message: "m"}},
			Now:    time.Minute, Action: encoding.Settle, Status: encoding.StatusFailed, ErrType: "action_attempt_not_found"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			d := encoding.Decide(c.Rec, c.Answer, t0.Add(c.Now), p, 1)
			require.Equal(t, c.Action, d.Action)
			switch d.Action {
			case encoding.Settle:
				require.Equal(t, c.Status, d.Record.Status)
				require.NotNil(t, d.Record.ResolvedAt)
				if c.ErrType != "" {
					require.Equal(t, c.ErrType, d.Record.Error.Type)
				}
				if c.Status == encoding.StatusIssued {
					require.Equal(t, number, d.Record.CardNumber)
					require.Equal(t, encoding.ResolvedByReconcile, d.Record.ResolvedBy)
				}
			case encoding.Extend:
				require.Equal(t, t0.Add(c.Deadline), d.Record.Deadline)
				require.Equal(t, encoding.StatusPending, d.Record.Status)
			case encoding.AskAgain, encoding.Wait:
				require.Positive(t, d.Retry)
			}
		})
	}
}
