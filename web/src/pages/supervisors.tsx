export function SupervisorsPage() { return <h2>supervisors</h2>; }
